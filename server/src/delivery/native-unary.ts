/**
 * Unary calls served on the native HTTP/2 stream: Send and Ack, the two unary calls on every
 * message's path. Through connect-node a unary call costs ~0.3-0.5 ms of server CPU before
 * the handler runs (handler context, linked abort controllers, header objects, the
 * universal request/response adapters); here it is one read of the body, one decode, the
 * handler, and one respond. Which requests it takes: native-wire.ts.
 */
import type * as http2 from "node:http2";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, codeToString, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "../logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { Tracing } from "../observability/tracing.js";
import { failedCall } from "../interceptors.js";
import { storeDisconnected } from "../nats/store-errors.js";
import { envelope } from "../wire-frames.js";
import { decodeMessage, grpcStatus, grpcWebTrailerFrame, readBody, singleEnvelope, tooLarge, withTrailers, type NativeCall, type Wire } from "./native-wire.js";

export interface UnaryCallDeps {
  log: Logger;
  now: () => number;
  metrics: Metrics;
  tracing: Tracing;
  /** False while this instance is disconnected from NATS: calls fail UNAVAILABLE at once. */
  storeUp: () => boolean;
}

export interface UnaryMethod<I extends DescMessage, O extends DescMessage> {
  /** For logs: "Send". */
  procedure: string;
  /** For decode-failure reports: "sealpost.delivery.v1.DeliveryService/Send". */
  method: string;
  input: I;
  output: O;
  /** Largest request message accepted (as connect-node's readMaxBytes for the method). */
  readMaxBytes: number;
  handle(request: MessageShape<I>, call: NativeCall): Promise<MessageShape<O>>;
}

export function serveUnary<I extends DescMessage, O extends DescMessage>(m: UnaryMethod<I, O>, call: NativeCall, d: UnaryCallDeps): void {
  const start = d.now();
  const { stream, wire, contentType, extra } = call;
  const run = async () => {
    let answer: Uint8Array;
    try {
      if (!d.storeUp()) throw storeDisconnected();
      const request = await readRequest(m, wire, stream, d.log);
      answer = toBinary(m.output, await m.handle(request, call));
    } catch (err) {
      const e = failedCall(err, m.procedure, d.log, d.now() - start);
      d.metrics.call(m.procedure, wire, stream.closed || stream.destroyed ? "canceled" : codeToString(e.code), (d.now() - start) / 1000);
      if (stream.closed || stream.destroyed) return;
      respondError(wire, stream, contentType, extra, e);
      return;
    }
    d.metrics.call(m.procedure, wire, stream.closed || stream.destroyed ? "canceled" : "ok", (d.now() - start) / 1000);
    if (stream.closed || stream.destroyed) return;
    d.log.debug("call", { procedure: m.procedure, code: "ok", ms: d.now() - start });
    respondOk(wire, stream, contentType, extra, answer);
  };
  d.tracing.rpc(m.method, call.headers, run).catch((err: unknown) => {
    // Responding failed (the stream broke meanwhile): nothing left to tell the client.
    d.log.debug("call", { procedure: m.procedure, code: "canceled", reason: String((err as Error)?.message ?? err) });
    stream.destroy();
  });
}

async function readRequest<I extends DescMessage>(
  m: UnaryMethod<I, DescMessage>,
  wire: Wire,
  stream: http2.ServerHttp2Stream,
  log: Logger,
): Promise<MessageShape<I>> {
  if (wire === "connect") return decodeMessage(m.input, 0, await readBody(stream, m.readMaxBytes), wire, m.method, log);
  // Enveloped: the limit is on the message, the body holds 5 bytes more.
  const { flags, payload } = singleEnvelope(await readBody(stream, m.readMaxBytes + 5), "unary");
  if (payload.length > m.readMaxBytes) throw tooLarge(payload.length, m.readMaxBytes);
  return decodeMessage(m.input, flags, payload, wire, m.method, log);
}

function respondOk(wire: Wire, stream: http2.ServerHttp2Stream, contentType: string, extra: Record<string, string>, answer: Uint8Array): void {
  switch (wire) {
    case "connect":
      stream.respond({ ":status": 200, "content-type": "application/proto", "content-length": answer.length, ...extra });
      stream.end(answer);
      return;
    case "grpc":
      withTrailers(stream, grpcStatus(undefined));
      stream.respond({ ":status": 200, "content-type": contentType, ...extra }, { waitForTrailers: true });
      stream.end(envelope(0, answer));
      return;
    case "grpc-web":
      stream.respond({ ":status": 200, "content-type": contentType, ...extra });
      stream.end(Buffer.concat([envelope(0, answer), grpcWebTrailerFrame(undefined)]));
      return;
  }
}

function respondError(wire: Wire, stream: http2.ServerHttp2Stream, contentType: string, extra: Record<string, string>, error: ConnectError): void {
  switch (wire) {
    case "connect": {
      const body = errorToJsonBytes(error, undefined);
      const metadata: Record<string, string> = {};
      error.metadata.forEach((v, k) => (metadata[k] = v));
      stream.respond({ ...metadata, ":status": codeToHttpStatus(error.code), "content-type": "application/json", "content-length": body.length, ...extra });
      stream.end(body);
      return;
    }
    case "grpc":
      // Trailers-only: one HEADERS frame with END_STREAM (what gRPC clients expect).
      stream.respond({ ":status": 200, "content-type": contentType, ...extra, ...grpcStatus(error) }, { endStream: true });
      return;
    case "grpc-web":
      stream.respond({ ":status": 200, "content-type": contentType, ...extra });
      stream.end(grpcWebTrailerFrame(error));
      return;
  }
}
