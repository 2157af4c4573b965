/**
 * A deliberately broken "server": an HTTP/1.1 proxy for the Connect protocol (JSON codec)
 * that sits in front of any real server and corrupts it in one named way. It exists to prove
 * the suite can fail: the faults are the kind a real implementation gets wrong, and each
 * must make specific cases fail while the proxy is otherwise transparent.
 *
 *   wrong-code    every error code is replaced by another (not_found -> unknown, ...)
 *   skip-dedupe   Send's message_id is replaced by a fresh one, as if the server ignored
 *                 idempotency: a retry is stored twice
 *   drop-message  the first mailbox message of every Receive stream is silently dropped
 *
 * Only Connect+JSON over HTTP/1.1 is understood, which is enough: the fault is in the
 * server's answers, not in a protocol.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";

export type Fault = "none" | "wrong-code" | "skip-dedupe" | "drop-message";
export const faults: Fault[] = ["wrong-code", "skip-dedupe", "drop-message"];

export interface FaultProxy {
  url: string;
  close(): Promise<void>;
}

/** A different code for every code, so any case that checks a code notices. */
function wrongCode(code: string): string {
  return code === "unknown" ? "internal" : "unknown";
}

function rewriteRequest(fault: Fault, path: string, body: Buffer): Buffer {
  if (fault !== "skip-dedupe" || !path.endsWith("/sealpost.delivery.v1.DeliveryService/Send")) return body;
  const json = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
  const fresh = randomBytes(16).toString("base64");
  if ("messageId" in json) json.messageId = fresh;
  if ("message_id" in json) json.message_id = fresh;
  return Buffer.from(JSON.stringify(json));
}

function rewriteUnaryResponse(fault: Fault, status: number, body: Buffer): Buffer {
  if (fault !== "wrong-code" || status === 200 || body.length === 0) return body;
  try {
    const json = JSON.parse(body.toString("utf8")) as { code?: string };
    if (typeof json.code === "string") json.code = wrongCode(json.code);
    return Buffer.from(JSON.stringify(json));
  } catch {
    return body;
  }
}

/** Rewrites the envelope frames of a Connect streaming response (flags u8, length u32be). */
class FrameRewriter {
  #buf = Buffer.alloc(0);
  #droppedOne = false;
  constructor(private readonly fault: Fault) {}

  push(chunk: Buffer): Buffer[] {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    while (this.#buf.length >= 5) {
      const len = this.#buf.readUInt32BE(1);
      if (this.#buf.length < 5 + len) break;
      const flags = this.#buf[0];
      let payload: Buffer = this.#buf.subarray(5, 5 + len);
      this.#buf = this.#buf.subarray(5 + len);
      const endStream = (flags & 0b10) !== 0;
      if (this.fault === "drop-message" && !endStream && !this.#droppedOne && /"message"\s*:/.test(payload.toString("utf8"))) {
        this.#droppedOne = true;
        continue;
      }
      if (this.fault === "wrong-code" && endStream) {
        try {
          const json = JSON.parse(payload.toString("utf8")) as { error?: { code?: string } };
          if (json.error?.code) json.error.code = wrongCode(json.error.code);
          payload = Buffer.from(JSON.stringify(json));
        } catch {
          // not JSON: pass through
        }
      }
      const head = Buffer.alloc(5);
      head[0] = flags;
      head.writeUInt32BE(payload.length, 1);
      out.push(head, payload);
    }
    return out;
  }
}

export async function startFaultProxy(upstreamUrl: string, fault: Fault): Promise<FaultProxy> {
  const upstream = new URL(upstreamUrl);
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body: Buffer = Buffer.concat(chunks);
      try {
        body = rewriteRequest(fault, req.url ?? "", body);
      } catch {
        // leave malformed requests alone: the server must judge them
      }
      const headers: http.OutgoingHttpHeaders = { ...req.headers, host: upstream.host, "content-length": String(body.length) };
      // Hop-by-hop headers describe the client's connection, not ours.
      for (const h of ["transfer-encoding", "connection", "keep-alive"]) delete headers[h];
      const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent }, (ur) => {
        const streaming = String(ur.headers["content-type"] ?? "").startsWith("application/connect+");
        const outHeaders = { ...ur.headers };
        for (const h of ["content-length", "transfer-encoding", "connection", "keep-alive"]) delete outHeaders[h];
        res.writeHead(ur.statusCode ?? 502, outHeaders);
        if (streaming) {
          const rw = new FrameRewriter(fault);
          ur.on("data", (c: Buffer) => {
            for (const b of rw.push(c)) res.write(b);
          });
          ur.on("end", () => res.end());
        } else {
          const parts: Buffer[] = [];
          ur.on("data", (c: Buffer) => parts.push(c));
          ur.on("end", () => res.end(rewriteUnaryResponse(fault, ur.statusCode ?? 0, Buffer.concat(parts))));
        }
        ur.on("error", () => res.destroy());
      });
      up.on("error", () => res.destroy());
      res.on("close", () => up.destroy());
      up.end(body);
    });
  });
  server.requestTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}
