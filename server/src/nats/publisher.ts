/**
 * JetStream publishes at core-NATS cost. `js.publish` makes a request per message (an inbox
 * mux entry, a timer and a promise chain: ~35-45 us of client CPU); here a publish is one
 * core `nc.publish` with a reply subject under one wildcard subscription that collects the
 * PubAcks (~5-8 us), with one sweep timer for all deadlines. Same durability: a message
 * counts as stored only when its stream's PubAck arrives (JetStream acks after it stored it).
 *
 * Errors keep the names store-errors.ts classifies: a lost ack is a TimeoutError, no stream
 * on the subject is NoResponders, a JetStream rejection is JetStreamApiError (its code).
 */
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { replyHeaders, replyStatus, type ReplyHeaders } from "./reply-headers.js";

export interface PubAck {
  stream: string;
  seq: number;
  /** JetStream had this Nats-Msg-Id already: seq is the original message's. */
  duplicate: boolean;
}

export interface PublishOptions {
  /** Nats-Msg-Id: a retry inside the stream's duplicate window returns the first PubAck. */
  msgId?: string;
  /** Nats-Expected-Stream: refuse if the subject is bound to another stream. */
  expectStream?: string;
  /** Nats-Expected-Last-Subject-Sequence: 0 makes the publish a KV create (fails if the key exists). */
  expectLastSubjectSeq?: number;
  /** W3C traceparent stored with the message (tracing on). */
  traceparent?: string;
}

interface Pending {
  /** The raw reply (PubAcks and API answers are JSON; direct gets are the message itself). */
  resolve(reply: Msg): void;
  reject(err: Error): void;
  deadline: number;
  op: RoundTrip;
  /** performance.now() when it was queued. */
  sentAt: number;
}

export type RoundTrip = "publish" | "api" | "get";

/** A subscription made through the turn queue (JetStreamPublisher.subscribe). */
export interface TurnSubscription {
  /** Idempotent; a subscription whose SUB has not gone out yet is never made. */
  unsubscribe(): void;
}

const SWEEP_MS = 250;
const utf8Decoder = new TextDecoder();
/** Reads answer in well under a millisecond; one lost in a NATS reconnect is retried after this. */
export const READ_TIMEOUT_MS = 2_000;
/** How long a Send waits for nats-server to confirm its hints before answering anyway. */
const PROCESSED_TIMEOUT_MS = 1_000;

type Reply = Record<string, unknown> & { error?: { code?: number; err_code?: number; description?: string } };

export class JetStreamPublisher {
  private readonly prefix: string;
  private readonly pending = new Map<number, Pending>();
  private readonly sub: Subscription;
  private readonly timer: NodeJS.Timeout;
  private next = 1;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    this.prefix = `${createInbox()}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (err, msg) => (err ? undefined : this.onAck(msg)) });
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  /** Told of every answered round trip (metrics). */
  onRoundTrip: ((op: RoundTrip, seconds: number) => void) | undefined;
  /** Starts a span for a round trip (tracing on); the result ends it. */
  traceRoundTrip: ((op: RoundTrip) => ((error?: string) => void) | undefined) | undefined;

  /** Messages published and not yet acknowledged (for admission control and tests). */
  get inFlight(): number {
    return this.pending.size;
  }

  async publish(subject: string, data: Uint8Array, opts: PublishOptions = {}): Promise<PubAck> {
    const body = parseReply(await this.send(subject, data, "publish", opts)) as { stream?: string; seq?: number; duplicate?: boolean };
    return { stream: body.stream ?? "", seq: body.seq ?? 0, duplicate: !!body.duplicate };
  }

  /**
   * A JetStream API request (e.g. `$JS.API.STREAM.MSG.DELETE.<stream>`) at the same cost as
   * a publish; resolves with the parsed answer, rejects JetStreamApiError on an API error.
   */
  async api<T = Record<string, unknown>>(subject: string, request: unknown): Promise<T> {
    return parseReply(await this.send(subject, jsonBytes(request), "api")) as T;
  }

  /**
   * A direct get (`$JS.API.DIRECT.GET.<stream>`, any replica may answer: single-replica
   * streams only, see stream-reads.ts): the stored message, or null when there is none.
   */
  async directGet(
    stream: string,
    query: Record<string, unknown>,
    timeoutMs = READ_TIMEOUT_MS,
  ): Promise<{ seq: number; subject: string; data: Uint8Array; header: ReplyHeaders } | null> {
    const m = await this.send(`$JS.API.DIRECT.GET.${stream}`, jsonBytes(query), "get", {}, timeoutMs);
    const h = replyHeaders(m);
    const code = h?.code ?? 0;
    if (code === 404) return null;
    if (code >= 400 || !h) throw named(code === 408 ? "TimeoutError" : "JetStreamApiError", `direct get: ${code} ${h?.description ?? ""}`.trim());
    return { seq: Number(h.get("Nats-Sequence")), subject: h.get("Nats-Subject"), data: m.data, header: h };
  }

  /**
   * A JetStream publish nobody waits for: no reply subject, so JetStream stores it (or
   * refuses it, e.g. a failed expectLastSubjectSeq) without sending a PubAck. For records
   * whose loss is tolerated by design (Send's outcome record): it saves nats-server the ack
   * and this instance the wake-up to read it. Goes out with this turn's other publishes.
   */
  publishUnconfirmed(subject: string, data: Uint8Array, opts: PublishOptions = {}): void {
    const h = publishHeaders(opts);
    this.later(() => this.nc.publish(subject, data, h ? { headers: h } : undefined));
  }

  private send(subject: string, data: Uint8Array, op: RoundTrip, opts: PublishOptions = {}, timeoutMs = this.timeoutMs): Promise<Msg> {
    const id = this.next++;
    return new Promise<Msg>((resolve, reject) => {
      const h = publishHeaders(opts);
      const span = this.traceRoundTrip?.(op);
      this.pending.set(id, {
        resolve: span ? (m) => (span(), resolve(m)) : resolve,
        reject: span ? (e) => (span(e.name), reject(e)) : reject,
        deadline: this.now() + timeoutMs,
        op,
        sentAt: this.onRoundTrip ? performance.now() : 0,
      });
      this.later(() => {
        try {
          this.nc.publish(subject, data, { reply: `${this.prefix}${id}`, headers: h });
        } catch (err) {
          if (this.pending.delete(id)) reject(err as Error);
        }
      });
    });
  }

  /**
   * A core publish (a hint, a notification) in the same socket write as this event-loop
   * turn's other publishes. nats.js flushes once per microtask checkpoint and every RPC runs
   * in its own macrotask, so unbatched each publish is its own write; queued ones go out
   * together from one setImmediate (at most one loop turn later).
   */
  publishCore(subject: string, data?: Uint8Array, reply?: string): void {
    this.later(() => this.nc.publish(subject, data, reply ? { reply } : undefined));
  }

  /**
   * A core subscription whose SUB (and later UNSUB) goes out in this turn's write, before the
   * reads and publishes queued after it: nats-server then has the interest in place before it
   * answers them. nats.js would write each SUB and UNSUB on its own, and a Receive stream's
   * open and close (one each per reconnecting device) cost two socket writes more than the
   * stream's reads. What goes out another way (the NATS client's own requests: reads of
   * replicated streams) can overtake it: await flushed() before sending such a request that
   * must find the interest in place. Throws like nc.subscribe when the connection is closed or draining;
   * `onError` hears of a subscribe that failed when its turn came (the connection closed
   * meanwhile).
   */
  subscribe(subject: string, onMsg: (msg: Msg) => void, onError: (err: Error) => void): TurnSubscription {
    if (this.nc.isClosed() || this.nc.isDraining()) throw named("ClosedConnectionError", "NATS connection closed or draining");
    let sub: Subscription | undefined;
    let cancelled = false;
    this.later(() => {
      if (cancelled) return;
      try {
        sub = this.nc.subscribe(subject, { callback: (err, msg) => (err || cancelled ? undefined : onMsg(msg)) });
      } catch (err) {
        onError(err as Error);
      }
    });
    return {
      unsubscribe: () => {
        if (cancelled) return;
        cancelled = true; // Also silences messages that arrive before the UNSUB goes out.
        if (sub) {
          const s = sub;
          this.later(() => s.unsubscribe());
        }
      },
    };
  }

  /**
   * Resolves once everything queued so far was handed to the connection. Send awaits it
   * before answering, so a hint is on the wire before the sender can send its next message
   * (through any instance): hints of one sender's messages reach a stream in order.
   */
  flushed(): Promise<void> {
    if (!this.queued.length) return Promise.resolve();
    return (this.flushedPromise ??= new Promise((r) => (this.resolveFlushed = r)));
  }

  /**
   * Resolves once nats-server has processed everything this connection sent so far (one
   * PING/PONG after this turn's publishes, shared by every caller that needs the same point).
   * `flushed` only puts a hint on the socket; another instance's later publish can still
   * reach nats-server first (its own connection, its own read loop), so a record stored there
   * and pushed at once overtakes the hint. After this, it cannot: nats-server has queued the
   * hint to its subscribers before it reads anything the answer to our caller causes.
   * Never rejects, and gives up after `timeoutMs` (NATS unreachable): hints are best effort,
   * a lost one is found by the stream's periodic check.
   */
  async processed(timeoutMs = PROCESSED_TIMEOUT_MS): Promise<void> {
    await this.flushed();
    const mark = this.writes;
    if (!this.ping || this.ping.covers < mark) {
      let timer: NodeJS.Timeout | undefined;
      const done = Promise.race([
        this.nc.flush().catch(() => {}),
        new Promise<void>((r) => {
          timer = setTimeout(r, timeoutMs);
          timer.unref();
        }),
      ]).finally(() => clearTimeout(timer));
      this.ping = { covers: mark, done };
    }
    return this.ping.done;
  }

  /** Turns of queued publishes handed to the connection (a ping covers those before it). */
  private writes = 0;
  private ping: { covers: number; done: Promise<void> } | undefined;

  private queued: (() => void)[] = [];
  private flushedPromise: Promise<void> | undefined;
  private resolveFlushed: (() => void) | undefined;
  private later(fn: () => void): void {
    if (this.queued.push(fn) === 1) setImmediate(() => this.flushQueued());
  }
  private flushQueued(): void {
    const q = this.queued;
    this.queued = [];
    this.writes++;
    const resolve = this.resolveFlushed;
    this.flushedPromise = this.resolveFlushed = undefined;
    queueMicrotask(() => resolve?.());
    for (const fn of q) {
      try {
        fn();
      } catch {
        // Core publishes are best effort (hints); a failed store publish rejects its own promise.
      }
    }
  }

  private onAck(msg: Msg): void {
    const id = Number(msg.subject.slice(this.prefix.length));
    const p = this.pending.get(id);
    if (!p) return; // Timed out already (the publish may still have been stored: callers retry with the same msgId).
    this.pending.delete(id);
    // Timed only while someone listens (sentAt 0: sent before the hook was set).
    if (this.onRoundTrip && p.sentAt) this.onRoundTrip(p.op, (performance.now() - p.sentAt) / 1000);
    if (replyStatus(msg) === 503) {
      p.reject(named("NoResponders", `no JetStream stream answers for this subject (503)`));
      return;
    }
    p.resolve(msg);
  }

  /** Fails what is past its deadline (reads and publishes have different timeouts: a full scan of what is in flight). */
  private sweep(): void {
    const t = this.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > t) continue;
      this.pending.delete(id);
      p.reject(named("TimeoutError", "no reply from JetStream in time"));
    }
  }

  /** Fails everything in flight (connection closing) and stops listening. */
  close(): void {
    clearInterval(this.timer);
    for (const p of this.pending.values()) p.reject(named("ClosedConnectionError", "publisher closed"));
    this.pending.clear();
    try {
      this.sub.unsubscribe();
    } catch {
      // Connection already closed.
    }
  }
}

/**
 * The JetStream headers of a publish, or undefined when it needs none, encoded once as NATS
 * writes them. nats.js calls only `encode()` on a publish's headers; its own MsgHdrs object
 * (a map of arrays, every name canonicalized through a spread, then a string and a TextEncoder
 * buffer per publish) was ~6% of what the server allocated per routed message.
 */
function publishHeaders(opts: PublishOptions): MsgHdrs | undefined {
  if (!opts.msgId && !opts.expectStream && opts.expectLastSubjectSeq === undefined && !opts.traceparent) return undefined;
  let text = "NATS/1.0\r\n";
  if (opts.msgId) text += `Nats-Msg-Id: ${headerValue(opts.msgId)}\r\n`;
  if (opts.expectStream) text += `Nats-Expected-Stream: ${headerValue(opts.expectStream)}\r\n`;
  if (opts.expectLastSubjectSeq !== undefined) text += `Nats-Expected-Last-Subject-Sequence: ${headerValue(String(opts.expectLastSubjectSeq))}\r\n`;
  if (opts.traceparent) text += `traceparent: ${headerValue(opts.traceparent)}\r\n`;
  return new EncodedHeaders(Buffer.from(`${text}\r\n`, "latin1")) as unknown as MsgHdrs;
}

/**
 * A request's JSON as bytes from Node's buffer pool: TextEncoder.encode makes an ArrayBuffer
 * of its own per call (~1-2.5 us in Node), and every Ack's delete and every read sends one.
 */
function jsonBytes(request: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(request));
}

/** Header values are our own ids and names; a line break or a non-ASCII character in one is a bug, not input. */
function headerValue(v: string): string {
  if (!/^[\x21-\x7e][\x20-\x7e]*$/.test(v)) throw new TypeError(`not a NATS header value: ${JSON.stringify(v)}`);
  return v;
}

/** Headers as nats.js's protocol layer uses them on a publish: their bytes. */
class EncodedHeaders {
  constructor(private readonly bytes: Uint8Array) {}
  encode(): Uint8Array {
    return this.bytes;
  }
}

/** An Error with the name store-errors.ts classifies (TimeoutError, NoResponders, JetStreamApiError...). */
export function named(name: string, message: string): Error {
  const e = new Error(message);
  e.name = name;
  return e;
}

/** A PubAck or API answer: its JSON, or JetStreamApiError (with status and code) for an error. */
function parseReply(msg: Msg): Reply {
  let body: Reply;
  try {
    body = JSON.parse(utf8Decoder.decode(msg.data));
  } catch {
    throw named("JetStreamApiError", "unreadable PubAck");
  }
  if (body.error) {
    const e = named("JetStreamApiError", body.error.description ?? "JetStream error") as Error & { status?: number; code?: number };
    e.status = body.error.code;
    e.code = body.error.err_code;
    throw e;
  }
  return body;
}
