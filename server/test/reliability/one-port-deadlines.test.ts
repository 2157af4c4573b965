/**
 * Request deadlines of the one-port listener over real sockets: a single-message request
 * body that trickles or never ends is cut (HTTP/2: the stream is reset, the connection
 * lives on; HTTP/1.1: the connection is closed), HTTP/1.1 headers sent a line at a time are
 * cut, and a streaming request path (a bidirectional call) is exempt.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http2 from "node:http2";
import * as net from "node:net";
import { listenOnePort, type OnePortServer } from "../../src/one-port.js";

const DEADLINE_MS = 300;
let server: OnePortServer;

beforeAll(async () => {
  server = await listenOnePort({
    host: "127.0.0.1",
    port: 0,
    requestBodyTimeoutMs: DEADLINE_MS,
    headersTimeoutMs: DEADLINE_MS,
    streamingRequest: (path) => path === "/stream" || path === "/native-stream",
    // Reads the whole body, then answers with its length.
    handler: (req, res) => {
      let n = 0;
      req.on("data", (c: Buffer) => (n += c.length));
      req.on("end", () => res.end(String(n)));
    },
    // The same on the HTTP/2 stream itself, for paths under /native.
    native: (stream, headers) => {
      if (!String(headers[":path"]).startsWith("/native")) return false;
      let n = 0;
      stream.on("data", (c: Buffer) => (n += c.length));
      stream.on("end", () => {
        if (stream.destroyed) return; // reset by the client
        stream.respond({ ":status": 200 });
        stream.end(`native ${n}`);
      });
      return true;
    },
  });
});
afterAll(async () => {
  await server?.close(100);
});

/** An h2 POST that sends `first` and then nothing: resolves with how it ended. */
function h2Hold(session: http2.ClientHttp2Session, path: string, waitMs: number): Promise<string> {
  return new Promise((resolve) => {
    const req = session.request({ ":method": "POST", ":path": path });
    req.on("error", () => {});
    req.write("partial");
    const timer = setTimeout(() => {
      resolve("open");
      req.close();
    }, waitMs);
    req.on("close", () => {
      clearTimeout(timer);
      resolve(req.rstCode === http2.constants.NGHTTP2_CANCEL ? "reset" : `closed ${req.rstCode}`);
    });
  });
}

function socketClosedWithin(socket: net.Socket, waitMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), waitMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe("one-port request deadlines", () => {
  it("resets an HTTP/2 request whose body never ends, keeps the connection, and exempts streaming requests", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => {});
    expect(await h2Hold(session, "/unary", 20 * DEADLINE_MS)).toBe("reset");
    expect(await h2Hold(session, "/stream", 5 * DEADLINE_MS)).toBe("open");
    // The connection still serves a complete request.
    const answer = await new Promise<string>((resolve) => {
      const req = session.request({ ":method": "POST", ":path": "/unary" });
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => resolve(body));
      req.end("12345");
    });
    expect(answer).toBe("5");
    session.close();
  });

  it("applies the same to streams the native handler takes, and survives their resets", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => {});
    expect(await h2Hold(session, "/native-unary", 20 * DEADLINE_MS)).toBe("reset");
    expect(await h2Hold(session, "/native-stream", 5 * DEADLINE_MS)).toBe("open");
    // A client reset in the middle of a body leaves the server serving the connection.
    const reset = session.request({ ":method": "POST", ":path": "/native-unary" });
    reset.on("error", () => {});
    reset.write("partial");
    await new Promise((r) => setTimeout(r, 50));
    reset.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    await new Promise((r) => reset.once("close", r));
    const answer = await new Promise<string>((resolve) => {
      const req = session.request({ ":method": "POST", ":path": "/native-unary" });
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => resolve(body));
      req.end("12345");
    });
    expect(answer).toBe("native 5");
    session.close();
  });

  it("closes an HTTP/1.1 connection whose body never finishes, and one whose headers trickle", async () => {
    const body = net.connect(server.port, "127.0.0.1");
    body.on("error", () => {});
    await new Promise((r) => body.once("connect", r));
    body.write("POST /unary HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\npartial");
    expect(await socketClosedWithin(body, 20 * DEADLINE_MS)).toBe(true);

    const headers = net.connect(server.port, "127.0.0.1");
    headers.on("error", () => {});
    await new Promise((r) => headers.once("connect", r));
    headers.write("POST /unary HTTP/1.1\r\n");
    const trickle = setInterval(() => headers.writable && headers.write("x-slow: 1\r\n"), DEADLINE_MS / 3);
    const closed = await socketClosedWithin(headers, 20 * DEADLINE_MS);
    clearInterval(trickle);
    expect(closed).toBe(true);
  });

  it("closes connections beyond the per-address cap at once, and takes new ones when others close", async () => {
    const capped = await listenOnePort({ host: "127.0.0.1", port: 0, maxConnectionsPerAddress: 3, handler: (_req, res) => res.end("ok") });
    try {
      const open = async () => {
        const s = net.connect(capped.port, "127.0.0.1");
        s.on("error", () => {});
        await new Promise((r) => s.once("connect", r));
        return s;
      };
      const first = await Promise.all([open(), open(), open()]);
      const fourth = await open();
      expect(await socketClosedWithin(fourth, 2_000)).toBe(true);
      for (const s of first) expect(s.destroyed).toBe(false);
      first[0].destroy();
      await new Promise((r) => setTimeout(r, 100));
      const again = await open();
      expect(await socketClosedWithin(again, 300)).toBe(false);
      for (const s of [...first, again]) s.destroy();
    } finally {
      await capped.close(100);
    }
  });
});
