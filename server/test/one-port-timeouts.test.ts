/**
 * Connection hygiene of the one-port listener over real sockets: a connection that never says
 * which protocol it speaks is closed, an HTTP/2 connection without streams is closed when
 * idle, one holding a silent long-lived stream is not, a closed connection is not kept alive
 * by its idle timer, and the stream limit is advertised.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http2 from "node:http2";
import * as net from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { H2_MAX_CONCURRENT_STREAMS, listenOnePort, type OnePortServer } from "../src/one-port.js";

const IDLE_MS = 300;
let server: OnePortServer;

beforeAll(async () => {
  server = await listenOnePort({
    host: "127.0.0.1",
    port: 0,
    firstBytesTimeoutMs: 200,
    h2IdleTimeoutMs: IDLE_MS,
    // "/hold?ms=N": headers at once, then silence for N ms, then the end (a quiet Receive stream).
    handler: (req, res) => {
      const ms = Number(new URL(req.url ?? "/", "http://x").searchParams.get("ms") ?? 0);
      res.writeHead(200, { "content-type": "text/plain" });
      (res as { flushHeaders?: () => void }).flushHeaders?.();
      setTimeout(() => res.end("done"), ms);
    },
  });
});
afterAll(async () => {
  await server?.close(100);
});

/** Resolves with how long the server took to close the socket (or "open" after waitMs). */
function closedWithin(socket: net.Socket, waitMs: number): Promise<number | "open"> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("open"), waitMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

describe("one-port connection timeouts", () => {
  it("closes a connection that sends nothing, or only part of the HTTP/2 preface", async () => {
    for (const first of ["", "PRI * HTTP/2"]) {
      const socket = net.connect(server.port, "127.0.0.1");
      socket.on("error", () => {});
      await new Promise((r) => socket.once("connect", r));
      if (first) socket.write(first);
      expect(await closedWithin(socket, 3_000)).not.toBe("open");
      socket.destroy();
    }
  });

  it("closes an HTTP/2 connection without streams after the idle timeout, never one with an open stream", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => {});
    await new Promise((r) => session.once("remoteSettings", r));
    expect(session.remoteSettings.maxConcurrentStreams).toBe(H2_MAX_CONCURRENT_STREAMS);
    const closed = new Promise<number>((resolve) => session.once("close", () => resolve(Date.now())));
    let goawayAt = 0;
    session.once("goaway", () => (goawayAt = Date.now()));
    // A stream silent for four idle periods survives, and so does its connection.
    const t0 = Date.now();
    const body = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ":path": `/hold?ms=${4 * IDLE_MS}` });
      let data = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (data += c));
      req.on("end", () => resolve(data));
      req.on("error", reject);
      req.end();
    });
    expect(body).toBe("done");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4 * IDLE_MS - 20);
    expect(goawayAt).toBe(0); // no GOAWAY while the stream was open
    expect(session.closed || session.destroyed).toBe(false);
    // Without streams the connection goes after about one idle period.
    const end = Date.now();
    const closedAt = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 5_000))]);
    expect(closedAt).toBeGreaterThan(0);
    expect(closedAt - end).toBeLessThan(3_000);
    expect(goawayAt).toBeGreaterThanOrEqual(end);
    session.destroy();
  });

  it("lets a closed HTTP/2 connection be collected (its idle timer does not pin it for the idle period)", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    // The server side of each session, weakly; the default idle period (minutes) outlasts the test.
    const sessions: WeakRef<http2.Http2Session>[] = [];
    const own = await listenOnePort({
      host: "127.0.0.1",
      port: 0,
      handler: (req, res) => {
        if ("stream" in req) sessions.push(new WeakRef(req.stream.session!));
        res.end("ok");
      },
    });
    try {
      // Like a one-shot client: one request, then the connection is destroyed at once.
      for (let i = 0; i < 5; i++) {
        const session = http2.connect(`http://127.0.0.1:${own.port}`);
        session.on("error", () => {});
        await new Promise<void>((resolve, reject) => {
          const req = session.request({ ":path": "/" });
          req.on("data", () => {});
          req.on("end", () => resolve());
          req.on("error", reject);
          req.end();
        });
        session.destroy();
      }
      expect(sessions).toHaveLength(5);
      const open = () => sessions.filter((w) => w.deref()?.destroyed === false).length;
      await expect.poll(open, { timeout: 5_000 }).toBe(0);
      // A WeakRef is cleared by a collection after the job that last dereferenced it.
      await new Promise((r) => setImmediate(r));
      gc();
      gc();
      await new Promise((r) => setImmediate(r));
      expect(sessions.filter((w) => w.deref() !== undefined)).toHaveLength(0);
    } finally {
      await own.close(100);
    }
  });
});
