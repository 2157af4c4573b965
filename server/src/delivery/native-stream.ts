/**
 * Streaming calls served on the native HTTP/2 stream, without connect-node's per-call and
 * per-message pipeline (handler context, abort controllers, chains of async iterables,
 * one socket write per message). Which requests it takes: native-wire.ts.
 */
import type * as http2 from "node:http2";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "../logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { Tracing } from "../observability/tracing.js";
import { SERVICE } from "./native-wire.js";
import { storeDisconnected } from "../nats/store-errors.js";
import { failedCall } from "../interceptors.js";
import { CallStop, type StopSignal } from "./call-stop.js";
import { connectEndStream, decodeMessage, grpcStatus, grpcWebTrailerFrame, tooLarge, withTrailers, type NativeCall, type Wire } from "./native-wire.js";

export interface StreamCallDeps {
  log: Logger;
  now: () => number;
  metrics: Metrics;
  tracing: Tracing;
  /** False while this instance is disconnected from NATS: calls fail UNAVAILABLE at once. */
  storeUp: () => boolean;
  /** Aborted when the instance shuts down: streams end UNAVAILABLE and clients go elsewhere. */
  shutdownSignal: AbortSignal;
}

/**
 * Runs one streaming call: `produce` writes its messages through the writer until it returns
 * (the call ends OK) or throws (the call ends with that error, mapped and logged as the
 * call-log interceptor does). `signal` aborts when the client goes away or the instance shuts down.
 */
export function serveStream(procedure: string, call: NativeCall, d: StreamCallDeps, produce: (out: ResponseWriter, signal: StopSignal) => Promise<void>): void {
  const start = d.now();
  const { stream, wire } = call;
  const out = new ResponseWriter(wire, stream, call.contentType, call.extra);
  const stop = new CallStop();
  const abort = () => stop.abort();
  // on, not once: close comes once, and a once wrapper is two more objects per stream.
  stream.on("close", abort);
  const open = openStops(d.shutdownSignal);
  open.add(stop);
  if (d.shutdownSignal.aborted) stop.abort();
  const done = (code: string) => d.metrics.call(procedure, wire, code, (d.now() - start) / 1000);
  const run = async () => {
    try {
      if (!d.storeUp()) throw storeDisconnected();
      await produce(out, stop);
      if (d.shutdownSignal.aborted) throw new ConnectError("server shutting down; reconnect", Code.Unavailable);
      if (stream.closed || stop.aborted) {
        d.log.debug("call", { procedure, code: "canceled", reason: "client went away", ms: d.now() - start });
        done("canceled");
        return;
      }
      d.log.debug("call", { procedure, code: "ok", ms: d.now() - start });
      done("ok");
      out.end(undefined);
    } catch (err) {
      if (stream.closed || (stop.aborted && !d.shutdownSignal.aborted)) {
        d.log.debug("call", { procedure, code: "canceled", reason: "client went away", ms: d.now() - start });
        done("canceled");
        return;
      }
      const e = failedCall(err, procedure, d.log, d.now() - start);
      done(codeToString(e.code));
      out.end(e);
    } finally {
      stream.off("close", abort);
      open.delete(stop);
    }
  };
  d.tracing.rpc(`${SERVICE}/${procedure}`, call.headers, run).catch((err: unknown) => {
    // Writing the end failed (the stream broke meanwhile): nothing left to tell the client.
    d.log.debug("call", { procedure, code: "canceled", reason: String((err as Error)?.message ?? err) });
    stream.destroy();
  });
}

/**
 * The open streams' stops, per shutdown signal, all aborted by one listener on it: a listener
 * per stream would cost ~100 bytes each, and an EventTarget finds the one to remove by
 * walking its list (10k streams closing would each walk it).
 */
const stopsBySignal = new WeakMap<AbortSignal, Set<CallStop>>();
function openStops(shutdown: AbortSignal): Set<CallStop> {
  let stops = stopsBySignal.get(shutdown);
  if (!stops) {
    const all = (stops = new Set());
    stopsBySignal.set(shutdown, all);
    shutdown.addEventListener("abort", () => {
      for (const s of all) s.abort();
    });
  }
  return stops;
}

/**
 * The request messages of a client- or bidi-streaming call as an async iterable, decoded as
 * they arrive. Reading pauses the HTTP/2 stream while `highWater` decoded messages wait, so
 * a consumer that stops pulling (its window is full) pushes back through flow control.
 */
export class RequestMessages<D extends DescMessage> implements AsyncIterable<MessageShape<D>> {
  private readonly queue: MessageShape<D>[] = [];
  private head = 0;
  private pending: Buffer | undefined;
  private done = false;
  private failure: unknown;
  private waiter: (() => void) | undefined;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly schema: D,
    private readonly maxBytes: number,
    private readonly wire: Wire,
    private readonly method: string,
    private readonly log: Logger,
    private readonly highWater = 256,
  ) {
    stream.on("data", (c: Buffer) => this.onData(c));
    stream.once("end", () => {
      if (this.pending?.length)
        this.fail(new ConnectError(`protocol error: incomplete envelope (${this.pending.length} bytes) at the end of the request`, Code.InvalidArgument));
      this.done = true;
      this.wake();
    });
    stream.once("error", (e) => this.fail(e));
  }

  private onData(chunk: Buffer): void {
    if (this.failure !== undefined) return;
    let b = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    while (b.length >= 5) {
      const len = b.readUInt32BE(1);
      if (len > this.maxBytes) {
        this.fail(tooLarge(len, this.maxBytes));
        return;
      }
      if (b.length < 5 + len) break;
      try {
        this.queue.push(decodeMessage(this.schema, b[0], b.subarray(5, 5 + len), this.wire, this.method, this.log));
      } catch (e) {
        this.fail(e);
        return;
      }
      b = b.subarray(5 + len);
    }
    if (b.length) this.pending = Buffer.from(b); // Copied: the chunk's memory is not ours to keep.
    if (this.queue.length - this.head >= this.highWater) this.stream.pause();
    this.wake();
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    this.stream.resume(); // Discard the rest; the call ends with the failure.
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<MessageShape<D>> {
    for (;;) {
      if (this.head < this.queue.length) {
        const m = this.queue[this.head];
        this.queue[this.head++] = undefined as never;
        if (this.head === this.queue.length) {
          this.queue.length = this.head = 0;
          if (this.stream.isPaused()) this.stream.resume();
        }
        yield m;
        continue;
      }
      if (this.failure !== undefined) throw this.failure;
      if (this.done) return;
      await new Promise<void>((r) => (this.waiter = r));
    }
  }
}

/**
 * Writes envelopes the way connect-es does for each protocol, batching the messages ready in
 * one turn into one write (cork until the turn's microtasks are done).
 */
export class ResponseWriter {
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
    if (grpc) withTrailers(this.stream, () => this.trailers ?? grpcStatus(undefined));
    this.stream.respond({ ":status": 200, "content-type": this.contentType, ...this.extra }, { waitForTrailers: grpc });
  }

  /**
   * Writes one message already in its envelope (flags 0, u32 length, the message); resolves
   * at once unless the stream's buffer is full (then on drain).
   */
  frame(frame: Uint8Array): Promise<void> | undefined {
    if (this.stream.closed || this.stream.destroyed) return undefined;
    if (!this.started) this.start();
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      // After the microtasks of this turn: messages ready now (pushed records, a buffered
      // batch, a burst of send results) go in one write, and nothing waits for the poll phase.
      process.nextTick(() => {
        this.corked = false;
        this.stream.uncork();
      });
    }
    if (!this.stream.write(frame)) return waitForDrain(this.stream);
    return undefined;
  }

  /** Ends the response: OK when `error` is undefined. */
  end(error: ConnectError | undefined): void {
    const s = this.stream;
    if (s.closed || s.destroyed) return;
    switch (this.wire) {
      case "grpc": {
        const status = grpcStatus(error);
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
        s.end(grpcWebTrailerFrame(error));
        return;
      }
      case "connect": {
        if (!this.started) this.start();
        s.end(connectEndStream(error));
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
