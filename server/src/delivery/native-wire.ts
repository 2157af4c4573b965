/**
 * The wire of calls served on the native HTTP/2 stream (native-stream.ts, native-unary.ts):
 * which requests that path takes, reading and decoding request messages, and the status
 * encodings (gRPC trailers, gRPC-Web trailer frame, Connect end-stream) built with
 * connect-es's own encoders, so both paths answer byte-for-byte alike.
 *
 * Taken natively: HTTP/2 POSTs in the binary codecs (Connect, gRPC, gRPC-Web), without
 * request compression, a deadline header or an Expect header. Everything else (HTTP/1.1,
 * JSON, compressed requests, deadlines, Connect GET) goes on to connect-node.
 */
import type * as http2 from "node:http2";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { endStreamToJson } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { AuthenticatedDevice } from "../auth/authenticator.js";
import type { Logger } from "../logger.js";
import { reportDecodeFailure } from "../parse-errors.js";
import { envelope } from "../wire-frames.js";
import { quickDecoders } from "./send-request-decoding.js";

export type Wire = "connect" | "grpc" | "grpc-web";

/** The service every natively served call belongs to. */
export const SERVICE = "sealpost.delivery.v1.DeliveryService";

/** A call served on its HTTP/2 stream: the stream, the request headers, what the answer needs. */
export interface NativeCall {
  stream: http2.ServerHttp2Stream;
  headers: http2.IncomingHttpHeaders;
  wire: Wire;
  /** The request's content type without parameters (the answer's, as connect-es echoes it). */
  contentType: string;
  /** Headers on every answer of the call (CORS). */
  extra: Record<string, string>;
  /** The device of the call's bearer token, checked before anything else (undefined for SendSealed). */
  token?: AuthenticatedDevice;
}

/** The protocol of an HTTP/2 request (its headers) the native path can serve, or undefined (connect-node takes it). */
export function nativeWire(h: http2.IncomingHttpHeaders, kind: "unary" | "stream"): Wire | undefined {
  if (h[":method"] !== "POST" || h.expect !== undefined) return undefined;
  if (h["connect-timeout-ms"] !== undefined || h["grpc-timeout"] !== undefined) return undefined;
  const encoding = kind === "unary" ? (h["content-encoding"] ?? h["grpc-encoding"]) : (h["connect-content-encoding"] ?? h["grpc-encoding"]);
  if (encoding !== undefined && encoding !== "identity") return undefined;
  const version = h["connect-protocol-version"];
  if (version !== undefined && version !== "1") return undefined;
  const type = String(h["content-type"] ?? "")
    .split(";")[0]
    .trim()
    .toLowerCase();
  if (type === (kind === "unary" ? "application/proto" : "application/connect+proto")) return "connect";
  if (type === "application/grpc" || type === "application/grpc+proto") return "grpc";
  if (type === "application/grpc-web" || type === "application/grpc-web+proto") return "grpc-web";
  return undefined;
}

/** connect-es's wording, so both paths answer an oversized message alike. */
export function tooLarge(size: number, max: number): ConnectError {
  return new ConnectError(`message size ${size} is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted);
}

/** The whole (small) request body, refused past `max` bytes before it is buffered further. */
export function readBody(stream: http2.ServerHttp2Stream, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) {
        cleanup();
        stream.resume();
        reject(tooLarge(size, max));
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const cleanup = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
    };
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("error", onError);
  });
}

/**
 * The one enveloped message of a unary or server-streaming request body (gRPC, gRPC-Web,
 * Connect streaming). A wrong number of messages is a cardinality violation: UNIMPLEMENTED
 * (gRPC's code, as connect-es answers).
 */
export function singleEnvelope(body: Buffer, methodKind: "unary" | "server-streaming"): { flags: number; payload: Buffer } {
  if (body.length === 0) throw new ConnectError(`protocol error: missing input message for ${methodKind} method`, Code.Unimplemented);
  if (body.length < 5) throw new ConnectError(`protocol error: promised 5 bytes in enveloped message, got ${body.length} bytes`, Code.InvalidArgument);
  const len = body.readUInt32BE(1);
  if (body.length < 5 + len)
    throw new ConnectError(`protocol error: promised ${len} bytes in enveloped message, got ${body.length - 5} bytes`, Code.InvalidArgument);
  if (body.length > 5 + len) throw new ConnectError(`protocol error: received extra input message for ${methodKind} method`, Code.Unimplemented);
  return { flags: body[0], payload: body.subarray(5) };
}

/** Decodes one request message (an envelope's flags and payload); INVALID_ARGUMENT (logged once) otherwise. */
export function decodeMessage<D extends DescMessage>(schema: D, flags: number, payload: Uint8Array, wire: Wire, method: string, log: Logger): MessageShape<D> {
  if (flags & 0x01) {
    const reason = "received compressed envelope, but do not know how to decompress";
    reportDecodeFailure(log, method, wire, reason);
    throw new ConnectError(reason, Code.InvalidArgument);
  }
  if (flags !== 0) throw new ConnectError(`protocol error: unexpected envelope flags ${flags} in a request`, Code.InvalidArgument);
  const quick = quickDecoders.get(schema)?.(payload);
  if (quick) return quick as MessageShape<D>;
  try {
    return fromBinary(schema, payload);
  } catch (e) {
    const reason = `parse binary: ${e instanceof Error ? e.message : String(e)}`;
    reportDecodeFailure(log, method, wire, reason);
    throw new ConnectError(reason, Code.InvalidArgument);
  }
}

/** gRPC status trailers (or trailers-only headers): grpc-status, grpc-message, details, the error's metadata. */
export function grpcStatus(error: ConnectError | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  setTrailerStatus(new Headers(), error).forEach((v, k) => (out[k] = v));
  return out;
}

/** The gRPC-Web trailer frame. */
export function grpcWebTrailerFrame(error: ConnectError | undefined): Buffer {
  let text = "";
  for (const [k, v] of Object.entries(grpcStatus(error))) text += `${k}: ${v}\r\n`;
  return envelope(0x80, Buffer.from(text));
}

/** The Connect streaming end-stream frame. */
export function connectEndStream(error: ConnectError | undefined): Buffer {
  return envelope(0x02, Buffer.from(JSON.stringify(endStreamToJson(new Headers(), error, undefined))));
}

/** Sends `trailers` when the stream asks for them. */
export function withTrailers(stream: http2.ServerHttp2Stream, trailers: Record<string, string> | (() => Record<string, string>)): void {
  stream.once("wantTrailers", () => {
    try {
      stream.sendTrailers(typeof trailers === "function" ? trailers() : trailers);
    } catch {
      stream.destroy(); // closed meanwhile: nothing to send the status on
    }
  });
}
