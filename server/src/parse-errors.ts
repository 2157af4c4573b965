/**
 * Requests that cannot be decoded are the caller's fault: INVALID_ARGUMENT on every protocol.
 *
 * connect-es answers undecodable protobuf (malformed, truncated, invalid UTF-8 in a string),
 * a compressed envelope without a negotiated encoding and a JSON body under a binary content
 * type with INTERNAL (HTTP 500 on Connect), as grpc's status-code table suggests, before any
 * interceptor runs. Our schema promises INVALID_ARGUMENT for bad input, and INTERNAL is what
 * operators alert on, so each router handler is wrapped to rewrite exactly those answers on
 * the wire (a Connect error body or end-stream message, a gRPC trailer, a gRPC-Web trailer
 * frame) and log one line naming the method and the reason, never the payload.
 *
 * Cost: nothing per message on gRPC (the trailer is fixed when the adapter reads it) and one
 * flag test per frame on Connect streaming and gRPC-Web.
 */
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import type { Logger } from "./logger.js";
import { envelope } from "./wire-frames.js";

/** The library's own messages for a request body it could not decode (connect-es 2.x). */
const DECODE_FAILURE = /^(parse binary: |received compressed envelope, but do not know how to decompress|received parsed JSON request body)/;

const GRPC_INTERNAL = "13";
const GRPC_INVALID_ARGUMENT = "3";
const END_STREAM_FLAG = 0b10;
const GRPC_WEB_TRAILER_FLAG = 0x80;

export function isDecodeFailure(message: string | undefined): boolean {
  return message !== undefined && DECODE_FAILURE.test(message);
}

/** The one log line of a request that could not be decoded: never its bytes. */
export function reportDecodeFailure(log: Logger, method: string, protocol: string, reason: string): void {
  log.warn("request could not be decoded", { method, protocol, reason });
}

/** The handler with decode failures answered INVALID_ARGUMENT (and logged). */
export function invalidArgumentOnDecodeFailure(handler: UniversalHandler, log: Logger): UniversalHandler {
  const method = `${handler.service.typeName}/${handler.method.name}`;
  const report = (protocol: string, reason: string) => reportDecodeFailure(log, method, protocol, reason);
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    const type = res.header?.get("content-type") ?? "";
    if (type.startsWith("application/grpc-web")) return { ...res, body: mapFrames(res.body, (f) => grpcWebTrailer(f, report)) };
    if (type.startsWith("application/grpc")) return grpcTrailer(res, report);
    if (type.startsWith("application/connect+")) return { ...res, body: mapFrames(res.body, (f) => connectEndStream(f, report)) };
    if (res.status === 500 && res.body) return connectUnary(res, await collect(res.body), report);
    return res;
  };
  return Object.assign(wrapped, handler);
}

type Report = (protocol: string, reason: string) => void;

/** Connect unary: the error is the JSON body of an HTTP 500 (already read: it is small). */
function connectUnary(res: UniversalServerResponse, body: Uint8Array, report: Report): UniversalServerResponse {
  const error = parseJson(body) as { code?: string; message?: string } | undefined;
  if (error?.code !== "internal" || !isDecodeFailure(error.message)) return { ...res, body: once(body) };
  report("connect", error.message!);
  const out = new TextEncoder().encode(JSON.stringify({ ...error, code: "invalid_argument" }));
  res.header?.set("content-length", String(out.length));
  return { ...res, status: 400, body: once(out) };
}

/** gRPC: the status is in the trailer, which the adapter reads after the body is written. */
function grpcTrailer(res: UniversalServerResponse, report: Report): UniversalServerResponse {
  const trailer = res.trailer;
  if (!trailer) return res;
  let checked = false;
  return {
    ...res,
    get trailer() {
      if (!checked) {
        checked = true;
        const message = decodeGrpcMessage(trailer.get("grpc-message"));
        if (trailer.get("grpc-status") === GRPC_INTERNAL && isDecodeFailure(message)) {
          report("grpc", message!);
          trailer.set("grpc-status", GRPC_INVALID_ARGUMENT);
        }
      }
      return trailer;
    },
  };
}

/** Connect streaming: the error is in the end-stream message (flag 0b10, JSON). */
function connectEndStream(frame: Uint8Array, report: Report): Uint8Array {
  if (!(frame[0] & END_STREAM_FLAG) || frame.length < 5) return frame;
  const end = parseJson(frame.subarray(5)) as { error?: { code?: string; message?: string } } | undefined;
  if (end?.error?.code !== "internal" || !isDecodeFailure(end.error.message)) return frame;
  report("connect", end.error.message!);
  return envelope(frame[0], new TextEncoder().encode(JSON.stringify({ ...end, error: { ...end.error, code: "invalid_argument" } })));
}

/** gRPC-Web: the trailers are the body's last frame (flag 0x80, HTTP/1 header lines). */
function grpcWebTrailer(frame: Uint8Array, report: Report): Uint8Array {
  if (!(frame[0] & GRPC_WEB_TRAILER_FLAG) || frame.length < 5) return frame;
  const text = new TextDecoder().decode(frame.subarray(5));
  const status = /^grpc-status:\s*(\d+)\s*$/im.exec(text)?.[1];
  const message = decodeGrpcMessage(/^grpc-message:\s*(.*?)\s*$/im.exec(text)?.[1]);
  if (status !== GRPC_INTERNAL || !isDecodeFailure(message)) return frame;
  report("grpc-web", message!);
  return envelope(frame[0], new TextEncoder().encode(text.replace(/^grpc-status:\s*\d+/im, `grpc-status: ${GRPC_INVALID_ARGUMENT}`)));
}

/**
 * The body with `map` applied to each chunk. connect-es yields one whole envelope per chunk
 * (transformJoinEnvelopes), so a chunk's first byte is its flags.
 */
function mapFrames(body: UniversalServerResponse["body"], map: (frame: Uint8Array) => Uint8Array): UniversalServerResponse["body"] {
  if (!body) return body;
  return {
    [Symbol.asyncIterator]() {
      const it = body[Symbol.asyncIterator]();
      return {
        next: async () => {
          const r = await it.next();
          return r.done ? r : { done: false, value: map(r.value) };
        },
        return: (v?: unknown) => it.return?.(v) ?? Promise.resolve({ done: true as const, value: undefined }),
        throw: (e?: unknown) => it.throw?.(e) ?? Promise.reject(e),
      };
    },
  };
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const c of body) chunks.push(c);
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}

function decodeGrpcMessage(raw: string | null | undefined): string | undefined {
  if (raw == null) return undefined;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
