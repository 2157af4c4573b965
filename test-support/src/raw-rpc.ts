/**
 * Raw RPC requests for fuzzing: arbitrary request bytes, framed (or deliberately misframed)
 * by hand for Connect (unary binary and JSON, streaming), gRPC and gRPC-Web, over
 * HTTP/1.1 or h2c, with the outcome reduced to a code name, so a test can see exactly what
 * a hostile non-library client gets. Every call is bounded by a timeout.
 */
import * as http from "node:http";
import * as http2 from "node:http2";

export type RawProtocol = "connect-proto-h2" | "connect-json-h1" | "grpc" | "grpc-web";
export const rawProtocols: RawProtocol[] = ["connect-proto-h2", "connect-json-h1", "grpc", "grpc-web"];

export interface RawOutcome {
  /** A Connect/gRPC code name ("ok", "invalid_argument", ...), "timeout", "reset" or "http-<status>". */
  code: string;
  status?: number;
  /** Whether response bytes or headers arrived at all. */
  answered: boolean;
  /** The error message, when the answer carried one. */
  message?: string;
}

const GRPC_CODES = [
  "ok",
  "canceled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
];

/** A Connect/gRPC envelope: flags, u32be length (declared, may lie), then the payload. */
export function envelope(payload: Uint8Array, flags = 0, declaredLength = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([head, payload]);
}

export interface RawRequest {
  baseUrl: string;
  /** "/package.Service/Method" */
  path: string;
  protocol: RawProtocol;
  /** The body as sent: for framed protocols the caller frames it (see envelope). */
  body: Uint8Array;
  streaming?: boolean;
  headers?: Record<string, string>;
  timeoutMs?: number;
  /**
   * Send only this many body bytes, then: "end" the request, "destroy" the connection,
   * "reset" the stream (h2 RST_STREAM CANCEL; h1: destroy), or "hold" it open, silent,
   * until the timeout.
   */
  truncateAt?: number;
  close?: "end" | "destroy" | "reset" | "hold";
}

export function contentType(protocol: RawProtocol, streaming: boolean): string {
  switch (protocol) {
    case "connect-proto-h2":
      return streaming ? "application/connect+proto" : "application/proto";
    case "connect-json-h1":
      return streaming ? "application/connect+json" : "application/json";
    case "grpc":
      return "application/grpc+proto";
    case "grpc-web":
      return "application/grpc-web+proto";
  }
}

/** Code from a Connect end-of-stream message or a gRPC-Web trailer frame in `body`. */
function codeFromFrames(body: Buffer, protocol: RawProtocol): string | undefined {
  let o = 0;
  let last: string | undefined;
  while (o + 5 <= body.length) {
    const flags = body[o];
    const len = body.readUInt32BE(o + 1);
    const payload = body.subarray(o + 5, o + 5 + len);
    o += 5 + len;
    if (protocol === "grpc-web" && flags & 0x80) {
      const m = /grpc-status:\s*(\d+)/i.exec(payload.toString("utf8"));
      if (m) last = GRPC_CODES[Number(m[1])] ?? `grpc-${m[1]}`;
    } else if (protocol !== "grpc-web" && flags & 0x02) {
      try {
        const j = JSON.parse(payload.toString("utf8")) as { error?: { code?: string } };
        last = j.error?.code ?? "ok";
      } catch {
        last = "bad-end-stream";
      }
    } else {
      last ??= "ok"; // a message arrived
    }
  }
  return last;
}

function connectUnaryCode(status: number, body: Buffer): string {
  if (status === 200) return "ok";
  try {
    const j = JSON.parse(body.toString("utf8")) as { code?: string };
    if (j.code) return j.code;
  } catch {
    // not JSON
  }
  return `http-${status}`;
}

/** The error message of a Connect error body, end-stream message or gRPC(-Web) trailer text. */
function messageOf(body: Buffer, grpcMessage?: string): string | undefined {
  const text = body.toString("utf8");
  const raw = grpcMessage ?? (/"message":"((?:[^"\\]|\\.)*)"/.exec(text) ?? /grpc-message:\s*([^\r\n]*)/i.exec(text))?.[1];
  if (raw === undefined) return undefined;
  try {
    return decodeURIComponent(raw); // gRPC percent-encodes grpc-message
  } catch {
    return raw;
  }
}

function writeBody(stream: NodeJS.WritableStream, req: RawRequest, destroy: () => void, reset: () => void = destroy): void {
  const body = Buffer.from(req.truncateAt !== undefined ? req.body.subarray(0, req.truncateAt) : req.body);
  switch (req.close ?? "end") {
    case "end":
      stream.end(body);
      return;
    case "hold":
      stream.write(body);
      return;
    case "destroy":
      stream.write(body);
      setTimeout(destroy, 5);
      return;
    case "reset":
      stream.write(body);
      setTimeout(reset, 5);
      return;
  }
}

/** One request over HTTP/1.1 (Connect JSON, gRPC-Web). */
function h1(req: RawRequest, headers: Record<string, string>): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const timeoutMs = req.timeoutMs ?? 10_000;
    let settled = false;
    const done = (o: RawOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.destroy();
      resolve(o);
    };
    const r = http.request(`${req.baseUrl}${req.path}`, { method: "POST", headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => {
        chunks.push(c);
        // A server stream that answered with data is alive; no need to wait for its end.
        if (req.streaming && Buffer.concat(chunks).length >= 5) {
          const body = Buffer.concat(chunks);
          done({ code: codeFromFrames(body, req.protocol) ?? "ok", status: res.statusCode, answered: true, message: messageOf(body) });
        }
      });
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        const status = res.statusCode ?? 0;
        let code: string;
        if (req.protocol === "grpc-web")
          code = (res.headers["grpc-status"] ? GRPC_CODES[Number(res.headers["grpc-status"])] : codeFromFrames(body, req.protocol)) ?? `http-${status}`;
        else if (req.streaming && status === 200) code = codeFromFrames(body, req.protocol) ?? "empty-stream";
        else code = connectUnaryCode(status, body);
        done({ code, status, answered: true, message: messageOf(body, res.headers["grpc-message"] as string | undefined) });
      });
      res.on("error", () => done({ code: "reset", status: res.statusCode, answered: true }));
    });
    r.on("error", () => done({ code: "reset", answered: false }));
    const timer = setTimeout(() => done({ code: "timeout", answered: false }), timeoutMs);
    writeBody(r, req, () => done({ code: "client-closed", answered: false }));
  });
}

/** One request over h2c (Connect binary, gRPC) on a session of its own. */
function h2(req: RawRequest, headers: Record<string, string>): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const timeoutMs = req.timeoutMs ?? 10_000;
    const session = http2.connect(req.baseUrl);
    let settled = false;
    let status: number | undefined;
    let grpcStatus: string | undefined;
    let grpcMessage: string | undefined;
    const chunks: Buffer[] = [];
    const done = (o: RawOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      resolve(o);
    };
    session.on("error", () => done({ code: "reset", status, answered: status !== undefined }));
    const s = session.request({ ":method": "POST", ":path": req.path, ...headers });
    s.on("response", (h) => {
      status = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
      if (h["grpc-message"] !== undefined) grpcMessage = String(h["grpc-message"]);
    });
    s.on("trailers", (t) => {
      if (t["grpc-status"] !== undefined) grpcStatus = String(t["grpc-status"]);
      if (t["grpc-message"] !== undefined) grpcMessage = String(t["grpc-message"]);
    });
    s.on("data", (c: Buffer) => {
      chunks.push(c);
      if (req.streaming && Buffer.concat(chunks).length >= 5) {
        const body = Buffer.concat(chunks);
        done({ code: req.protocol === "grpc" ? "ok" : (codeFromFrames(body, req.protocol) ?? "ok"), status, answered: true, message: messageOf(body) });
      }
    });
    s.on("end", () => {
      const body = Buffer.concat(chunks);
      let code: string;
      if (req.protocol === "grpc") code = grpcStatus !== undefined ? (GRPC_CODES[Number(grpcStatus)] ?? `grpc-${grpcStatus}`) : `http-${status}`;
      else if (req.streaming && status === 200) code = codeFromFrames(body, req.protocol) ?? "empty-stream";
      else code = connectUnaryCode(status ?? 0, body);
      done({ code, status, answered: true, message: messageOf(body, grpcMessage) });
    });
    s.on("error", () => done({ code: "reset", status, answered: status !== undefined }));
    const timer = setTimeout(() => done({ code: "timeout", status, answered: status !== undefined }), timeoutMs);
    writeBody(
      s,
      req,
      () => done({ code: "client-closed", status, answered: status !== undefined }),
      () => {
        s.close(http2.constants.NGHTTP2_CANCEL);
        setTimeout(() => done({ code: "client-reset", status, answered: status !== undefined }), 5);
      },
    );
  });
}

export function rawCall(req: RawRequest): Promise<RawOutcome> {
  const streaming = req.streaming ?? false;
  const headers: Record<string, string> = { "content-type": contentType(req.protocol, streaming), ...req.headers };
  if (req.protocol.startsWith("connect")) headers["connect-protocol-version"] = "1";
  if (req.protocol === "grpc") headers.te = "trailers";
  return req.protocol === "connect-proto-h2" || req.protocol === "grpc" ? h2(req, headers) : h1(req, headers);
}

/** Whether `code` is a proper RPC answer (a Connect/gRPC code), as opposed to a crash or hang. */
export function isRpcCode(code: string): boolean {
  return GRPC_CODES.includes(code);
}
