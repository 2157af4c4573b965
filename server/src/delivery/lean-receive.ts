/**
 * Receive on the native HTTP/2 stream, without connect-node's per-call pipeline.
 *
 * A Receive stream mostly waits. Through connect-node each one holds a handler context, abort
 * controllers, header objects and a chain of async iterables (~50-60 KiB with the request
 * objects), and every message is its own write to the socket. Here a stream holds the
 * mailbox generator and the HTTP/2 stream, and messages ready in the same turn go out in one
 * write.
 *
 * Taken here: Receive over HTTP/2 in the binary codecs (Connect streaming, gRPC, gRPC-Web),
 * without request compression and without a deadline header. Everything else (HTTP/1.1,
 * JSON, compressed requests, deadlines) goes on to connect-node, which answers the same.
 * The wire format per protocol is the one connect-es writes, so clients cannot tell.
 */
import type * as http2 from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { DeliveryService, ReceiveRequestSchema, ReceiveResponseSchema, type ReceiveRequest, type ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { RequestHandler } from "../one-port.js";
import type { Logger } from "../logger.js";
import type { AuthenticatedDevice } from "../auth/authenticator.js";
import { failedCall } from "../interceptors.js";
import { reportDecodeFailure } from "../parse-errors.js";
import { envelope, headersSetOn } from "../wire-frames.js";

const PATH = `/${DeliveryService.typeName}/${DeliveryService.method.receive.name}`;
const METHOD = PATH.slice(1);

type Wire = "connect" | "grpc" | "grpc-web";

export interface LeanReceiveDeps {
  /** The device an `authorization` header acts for (token and device list), or UNAUTHENTICATED. */
  authenticate(header: string | undefined): Promise<AuthenticatedDevice>;
  /** The mailbox stream of the device (what the Receive RPC yields). */
  mailbox(device: AuthenticatedDevice, req: ReceiveRequest, signal: AbortSignal): AsyncGenerator<ReceiveResponse>;
  /** Largest request body accepted (as connect-node's readMaxBytes). */
  readMaxBytes: number;
  log: Logger;
  now: () => number;
  /** Aborted when the instance shuts down: streams end UNAVAILABLE and clients go elsewhere. */
  shutdownSignal: AbortSignal;
}

export function withLeanReceive(next: RequestHandler, deps: LeanReceiveDeps): RequestHandler {
  return (req, res) => {
    const wire = leanWire(req);
    if (!wire) return next(req, res);
    serve(wire, req as http2.Http2ServerRequest, res as http2.Http2ServerResponse, deps).catch((err: unknown) => {
      // Writing the end failed (the stream broke meanwhile): nothing left to tell the client.
      deps.log.debug("call", { procedure: "Receive", code: "canceled", reason: String((err as Error)?.message ?? err) });
      (res as http2.Http2ServerResponse).stream.destroy();
    });
  };
}

/** The protocol, when this handler takes the request. */
function leanWire(req: Parameters<RequestHandler>[0]): Wire | undefined {
  if (req.method !== "POST" || req.url !== PATH || !("stream" in req)) return undefined;
  const h = req.headers;
  if (h["connect-timeout-ms"] !== undefined || h["grpc-timeout"] !== undefined) return undefined;
  const encoding = h["connect-content-encoding"] ?? h["grpc-encoding"];
  if (encoding !== undefined && encoding !== "identity") return undefined;
  const type = String(h["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  if (type === "application/connect+proto") return "connect";
  if (type === "application/grpc" || type === "application/grpc+proto") return "grpc";
  if (type === "application/grpc-web" || type === "application/grpc-web+proto") return "grpc-web";
  return undefined;
}

async function serve(wire: Wire, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, d: LeanReceiveDeps): Promise<void> {
  const start = d.now();
  const stream = res.stream;
  const out = new ResponseWriter(wire, stream, String(req.headers["content-type"]).split(";")[0], headersSetOn(res));
  const ac = new AbortController();
  const abort = () => ac.abort();
  stream.once("close", abort);
  d.shutdownSignal.addEventListener("abort", abort, { once: true });
  try {
    const request = parseRequest(await readBody(req, d.readMaxBytes), wire, d.log);
    const device = await d.authenticate(typeof req.headers.authorization === "string" ? req.headers.authorization : undefined);
    for await (const ev of d.mailbox(device, request, ac.signal)) await out.message(toBinary(ReceiveResponseSchema, ev));
    if (d.shutdownSignal.aborted) throw new ConnectError("server shutting down; reconnect", Code.Unavailable);
    if (!stream.closed) d.log.debug("call", { procedure: "Receive", code: "ok", ms: d.now() - start });
    out.end(undefined);
  } catch (err) {
    if (stream.closed || (ac.signal.aborted && !d.shutdownSignal.aborted)) {
      d.log.debug("call", { procedure: "Receive", code: "canceled", reason: "client went away", ms: d.now() - start });
      return;
    }
    out.end(failedCall(err, "Receive", d.log, d.now() - start));
  } finally {
    stream.off("close", abort);
    d.shutdownSignal.removeEventListener("abort", abort);
  }
}

/** The whole (small) request body, refused past `max` bytes before it is buffered further. */
function readBody(req: http2.Http2ServerRequest, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) {
        cleanup();
        req.resume();
        reject(new ConnectError(`message size ${size} is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted));
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
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", onError);
  });
}

/** Exactly one uncompressed envelope holding a ReceiveRequest. */
function parseRequest(body: Buffer, wire: Wire, log: Logger): ReceiveRequest {
  // A wrong number of request messages is a cardinality violation: UNIMPLEMENTED (gRPC's code, as connect-es).
  if (body.length === 0) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  if (body.length < 5) throw new ConnectError(`protocol error: promised 5 bytes in enveloped message, got ${body.length} bytes`, Code.InvalidArgument);
  const len = body.readUInt32BE(1);
  if (body.length < 5 + len) throw new ConnectError(`protocol error: promised ${len} bytes in enveloped message, got ${body.length - 5} bytes`, Code.InvalidArgument);
  if (body.length > 5 + len) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  if (body[0] & 0x01) {
    const reason = "received compressed envelope, but do not know how to decompress";
    reportDecodeFailure(log, METHOD, wire, reason);
    throw new ConnectError(reason, Code.InvalidArgument);
  }
  try {
    return fromBinary(ReceiveRequestSchema, body.subarray(5));
  } catch (e) {
    const reason = `parse binary: ${e instanceof Error ? e.message : String(e)}`;
    reportDecodeFailure(log, METHOD, wire, reason);
    throw new ConnectError(reason, Code.InvalidArgument);
  }
}

/**
 * Writes envelopes the way connect-es does for each protocol, batching the messages ready in
 * one turn into one write (cork until the turn's microtasks are done).
 */
class ResponseWriter {
  private started = false;
  private corked = false;
  private trailers: Record<string, string> | undefined;

  constructor(
    private readonly wire: Wire,
    private readonly stream: http2.ServerHttp2Stream,
    private readonly contentType: string,
    private readonly extra: Record<string, string>,
  ) {}

  private start(): void {
    this.started = true;
    const grpc = this.wire === "grpc";
    if (grpc) {
      // Ours only: the compat response (which this stream was handed in) listens too and
      // would send its own, empty trailers first.
      this.stream.removeAllListeners("wantTrailers");
      this.stream.once("wantTrailers", () => {
        try {
          this.stream.sendTrailers(this.trailers ?? { "grpc-status": "0" });
        } catch {
          this.stream.destroy(); // closed meanwhile: nothing to send the status on
        }
      });
    }
    this.stream.respond({ ":status": 200, "content-type": this.contentType, ...this.extra }, { waitForTrailers: grpc });
  }

  async message(payload: Uint8Array): Promise<void> {
    if (this.stream.closed || this.stream.destroyed) return;
    if (!this.started) this.start();
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      // After the microtasks of this turn: messages ready now (pushed records, a buffered
      // batch) go in one write, and nothing waits for the loop's poll phase.
      process.nextTick(() => {
        this.corked = false;
        this.stream.uncork();
      });
    }
    if (!this.stream.write(envelope(0, payload))) await waitForDrain(this.stream);
  }

  /** Ends the response: OK when `error` is undefined. */
  end(error: ConnectError | undefined): void {
    const s = this.stream;
    if (s.closed || s.destroyed) return;
    switch (this.wire) {
      case "grpc": {
        const status = { "grpc-status": String(error?.code ?? 0), ...(error ? { "grpc-message": encodeURIComponent(error.rawMessage) } : {}) };
        if (!this.started) {
          // Trailers-only: one HEADERS frame with END_STREAM (what gRPC clients expect).
          s.respond({ ":status": 200, "content-type": this.contentType, ...this.extra, ...status }, { endStream: true });
          return;
        }
        this.trailers = status;
        s.end();
        return;
      }
      case "grpc-web": {
        if (!this.started) this.start();
        const text = `grpc-status: ${error?.code ?? 0}\r\n${error ? `grpc-message: ${encodeURIComponent(error.rawMessage)}\r\n` : ""}`;
        s.end(envelope(0x80, Buffer.from(text)));
        return;
      }
      case "connect": {
        if (!this.started) this.start();
        const json = error ? { error: { code: codeToString(error.code), message: error.rawMessage } } : {};
        s.end(envelope(0x02, Buffer.from(JSON.stringify(json))));
        return;
      }
    }
  }
}

function waitForDrain(stream: http2.ServerHttp2Stream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}
