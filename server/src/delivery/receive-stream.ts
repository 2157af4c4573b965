/**
 * One device's live mailbox stream on this instance. No standing JetStream consumer: it reads
 * its mailbox by single-message gets (next_by_subj from its cursor; a long backlog in batches,
 * mailbox-reader.ts), learns of new mail, acks,
 * takeovers and revocation from one core-NATS subscription (hints), and re-checks the stream
 * on its own now and then (the hub's sweep) in case a hint was lost. The stream is the truth.
 *
 * Live push: the instance that stored a message hands the record to its own streams of the
 * device in memory, and publishes a hint with the sequence, which streams on other instances
 * answer with one get of exactly that message. A stream at the head of its mailbox (its last
 * read found nothing after the cursor) sends such a record on at once, without a read. The
 * cursor stays where reads proved everything up to it was delivered; pushed sequences above
 * it are remembered (`pushed`, at most the window) so a later read skips them instead of
 * sending them twice. Mail whose hint was lost is found by the next read (a hint without a
 * sequence, the periodic check, a reconnect of any instance). A push never overtakes mail a
 * read must find: a failed get or a re-check drops the queued pushes and the read sends
 * everything in sequence order.
 *
 * Flow control: at most `window` delivered-but-unacked sequences. Acks may be served by any
 * instance; they publish an "acked" hint that frees the window here. If that hint is lost,
 * the periodic check notices the oldest in-flight messages are gone from the stream.
 *
 * Takeover: on open, the stream claims its device in the receivers bucket; the KV revision is
 * a total order over all instances. It publishes takeover(order); any stream of the device
 * with a lower order answers Replaced and ends, whatever the arrival order of the hints.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { KV } from "@nats-io/kv";
import type { StreamMsg } from "../nats/stream-reads.js";
import { DrainedSchema, ReceiveResponseSchema, ReplacedSchema, type ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import type { Nats } from "../nats/connection.js";
import type { TurnSubscription } from "../nats/publisher.js";
import { notifySubject } from "../nats/layout.js";
import { unavailable } from "../nats/store-errors.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { Tracing } from "../observability/tracing.js";
import { decodeSignal, encodeSignal, type DeviceSignal } from "./device-signal.js";
import { decodeRecord, type MailboxRecord } from "./mailbox-record.js";
import { toMailboxMessage } from "./mailbox-message.js";
import { MailboxReader } from "./mailbox-reader.js";
import type { MailboxLocation, Mailboxes } from "./mailbox.js";
import { addressKey, type DeviceRef } from "../device-address.js";
import type { StopSignal } from "./call-stop.js";

/** How long a stream keeps retrying an unreachable store before it ends with UNAVAILABLE. */
const STORE_OUTAGE_MS = 30_000;
/**
 * Records a stream queues for push, in windows: a client that lags for a moment (a GC pause,
 * a burst) finds its mail still in memory rather than read back from the stream. Bounded by
 * bytes too: records can be 256 KiB.
 */
const QUEUE_WINDOWS = 4;
const QUEUE_MAX_BYTES = 1024 * 1024;
/** Own records a stream remembers as stored but not delivered, per window slot (see droppedSet). */
const DROPPED_PER_WINDOW = 4;
/** Typing indicators queued for a stream that is busy (oldest dropped beyond this). */
const MAX_EPHEMERAL_QUEUE = 64;

export interface ReceiveStreamDeps {
  nats: Nats;
  mailboxes: Mailboxes;
  receivers: KV;
  /** Writes the claim into the receivers bucket and returns its revision (default: receivers.put). */
  claim?: (key: string, value: Uint8Array) => Promise<number>;
  log: Logger;
  now: () => number;
  metrics?: Metrics;
  tracing?: Tracing;
}

export class ReceiveStream {
  readonly loc: MailboxLocation;
  /** Delivered and not known to be acked, ascending by construction. */
  get inFlight(): ReadonlySet<number> {
    return this.inFlightSet ?? NONE;
  }
  /** When the hub's sweep should poke this stream next (ms). */
  nextCheckAt = 0;
  /**
   * When the token that opened the stream expires (ms): the hub's sweep ends the stream then
   * (the client re-authenticates). Undefined: the token carries no expiry.
   */
  expiresAtMs: number | undefined;

  private cursor: number;
  /** The after_sequence the stream was opened with: mail at or below it is skipped, not delivered. */
  private readonly floor: number;
  private lastSent = 0;
  // The sets behind inFlight and pushed are made on first use: a stream that never had mail
  // (most idle streams) has neither; once made they stay (no new set per message).
  private inFlightSet: Set<number> | undefined;
  /** Delivered by push above the cursor and not acked (a read skips them). */
  private pushedSet: Set<number> | undefined;
  /**
   * Named by an Ack served on another instance that is deleting them ("acking", before its
   * deletes; "acked" after): possibly gone already, so not counted as known to be stored.
   */
  private ackingElsewhere: Set<number> | undefined;
  /**
   * This instance's own stored records of the device (their PubAck came back) that were offered
   * and not queued, or dropped from the queue, and not delivered yet: a later read sends them.
   * Known to be stored, so an Ack's count check still adds up while a lagging client's stream
   * catches up; without them every Ack then fell back to one delete per sequence (a purge
   * must stop below them, as below queued mail). At most DROPPED_PER_WINDOW windows' worth;
   * past that the count check fails, which is safe.
   */
  private droppedSet: Set<number> | undefined;
  /** Highest sequence ever pushed: when a read finds nothing after the cursor, the cursor may jump here. */
  private pushHigh = 0;
  /**
   * Records waiting to go out by push, in the order their hints arrived (a fetched one holds
   * its place while the get is in flight, so per-sender order survives mixing local pushes
   * with fetches for mail stored by other instances).
   */
  private pushQueue: { seq: number; record: Uint8Array | Promise<StreamMsg | null>; traceparent?: string }[] = [];
  /** Bytes of the records in pushQueue (fetched ones count once they are in memory: not here). */
  private queuedBytes = 0;
  /** The last read found nothing after the cursor, and no read was asked for since. */
  private atHead = false;
  /**
   * A read pass is running and no further one is due: mail announced now is queued for push
   * and goes out if the pass ends at the head (else the queue is dropped and the next pass
   * reads it). Without this, every message stored during a pass asked for another pass, and
   * a stream under steady load stayed in reads (a quarter of all deliveries in the Session
   * bench) instead of returning to push.
   */
  private get queuing(): boolean {
    return this.atHead || (this.reader !== undefined && !this.needRead);
  }
  /** A read of the stream is due (a hint without a sequence, a periodic check, a freed window). */
  private needRead = true;
  private order: number | undefined;
  private highestTakeover = 0;
  /** unavailable: the hint subscription could not be made (NATS closed under it). */
  private ended: "replaced" | "revoked" | "expired" | "unavailable" | undefined;
  private dirty = true;
  private periodic = false;
  private waiter: (() => void) | undefined;
  /** The current read pass's reader (acks seen meanwhile drop their messages from its buffer). */
  private reader: MailboxReader | undefined;
  private ephemeral: Uint8Array[] = [];
  private sub: TurnSubscription | undefined;
  private closed = false;
  private claimTried = false;

  constructor(
    private readonly d: ReceiveStreamDeps,
    readonly device: DeviceRef,
    readonly streamId: string,
    afterSequence: number,
    private readonly window: number,
    /** Called once when the stream is done (the hub forgets it). */
    private readonly onClose: () => void = () => {},
  ) {
    this.loc = d.mailboxes.locate(device);
    this.cursor = afterSequence;
    this.floor = afterSequence;
  }

  get key(): string {
    return addressKey(this.device);
  }

  /**
   * This stream claimed its device and was not replaced or ended: the device's current
   * stream. Mail handed to it in memory needs no hint (see Sender's pushLocal); if it ends
   * with mail it had not seen acked, close() hints the device so a newer stream reads it.
   */
  get owner(): boolean {
    return this.order !== undefined && !this.ended && !this.closed;
  }

  /** Something may be in the stream that this stream has not sent: read it. */
  wake(): void {
    this.needRead = true;
    this.atHead = false;
    this.nudge();
  }

  /** Let the run loop look at its queues (no read needed). */
  private nudge(): void {
    this.dirty = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /**
   * The hub's periodic check (or a NATS reconnect): look at the stream even without hints.
   * A hint may have been lost, so queued pushes may be ahead of unsent mail: drop them and
   * let the read send everything in sequence order.
   */
  poke(): void {
    this.periodic = true;
    this.dropQueue();
    this.wake();
  }

  /** Acks seen by this instance directly (the Ack RPC served here). */
  acked(sequences: number[]): void {
    const wasFull = this.inFlight.size >= this.window;
    for (const s of sequences) {
      this.inFlightSet?.delete(s);
      // Acked mail is deleted before the ack is reported, so a read skips it anyway.
      this.pushedSet?.delete(s);
      this.ackingElsewhere?.delete(s);
      this.droppedSet?.delete(s);
    }
    // A batch read before the ack may still hold it.
    this.reader?.forget(sequences);
    // At the head, queued pushes wait for the room; else a read pass stopped at the full window.
    if (wasFull && this.inFlight.size < this.window) {
      if (this.atHead) this.nudge();
      else this.wake();
    }
  }

  /**
   * The part of an Ack of `sequences` that may go in one purge instead of one delete each:
   * the acked sequences below the lowest one this stream delivered and has not seen acked
   * (live push and concurrent Sends deliver out of sequence order, so an Ack often leaves a
   * few delivered sequences below its highest one for the next Ack). `bound` is the highest
   * acked sequence in that prefix, `covered` how many acked sequences it holds (the rest are
   * deleted one by one); undefined when none. `verified`: reads covered the bound (at or
   * below the cursor, from the start of the mailbox), so every stored message at or below it
   * was delivered. Otherwise (live push leaves the cursor behind) it is safe only if the
   * mailbox stores no message this stream does not know: the Acker checks a count first
   * (knownStoredUpTo).
   */
  purgePlan(sequences: Set<number>): { bound: number; covered: number; verified: boolean } | undefined {
    let lowestUnacked = Number.MAX_SAFE_INTEGER;
    for (const q of this.inFlight) if (q < lowestUnacked && !sequences.has(q)) lowestUnacked = q;
    // Mail queued for push is not delivered yet. It can sit below delivered mail (a fetch for
    // mail stored by another instance went out first, and the stream waits for its client
    // before the next push), and knownStoredUpTo counts this instance's queued records, so
    // the count check would pass over it: a purge must stop below it. Entries at or below the
    // cursor are not waiting: a read pass running meanwhile delivered them (the push loop
    // skips them), and they may since be acked.
    for (const p of this.pushQueue) if (p.seq < lowestUnacked && this.undelivered(p.seq) && !sequences.has(p.seq)) lowestUnacked = p.seq;
    if (this.droppedSet) for (const q of this.droppedSet) if (q < lowestUnacked && this.undelivered(q) && !sequences.has(q)) lowestUnacked = q;
    let bound = 0;
    let covered = 0;
    for (const q of sequences) {
      if (q >= lowestUnacked) continue;
      covered++;
      if (q > bound) bound = q;
    }
    if (covered === 0) return undefined;
    const verified = this.floor === 0 && bound <= this.cursor;
    if (!verified) for (const q of sequences) if (q <= bound && !this.inFlight.has(q)) return undefined;
    return { bound, covered, verified };
  }

  /**
   * How many messages this stream knows to be stored at or below `high`: in flight, or from
   * this instance's own Sends queued for push (their PubAck came back). The Acker compares it
   * with a count of the mailbox whose answer said the stream ended at `high`: mail known
   * meanwhile above that was stored after the count and is not in it.
   */
  knownStoredUpTo(high: number): number {
    const gone = this.ackingElsewhere;
    let n = 0;
    for (const q of this.inFlight) if (q <= high && !gone?.has(q)) n++;
    for (const p of this.pushQueue) if (p.record instanceof Uint8Array && p.seq <= high && this.undelivered(p.seq) && !gone?.has(p.seq)) n++;
    if (this.droppedSet) for (const q of this.droppedSet) if (q <= high && this.undelivered(q) && !gone?.has(q)) n++;
    return n;
  }

  /** Stored above what reads delivered and not sent by push: still to go out (a read sends it if the queue does not). */
  private undelivered(seq: number): boolean {
    return seq > this.cursor && !this.inFlight.has(seq);
  }

  /** Own records not taken for push now are still known to be stored (droppedSet). */
  private dropped(seq: number): void {
    const set = (this.droppedSet ??= new Set());
    if (set.size < DROPPED_PER_WINDOW * this.window) set.add(seq);
  }

  /** Empties the push queue; a later read sends what it held. */
  private dropQueue(): void {
    for (const p of this.pushQueue) if (p.record instanceof Uint8Array && this.undelivered(p.seq)) this.dropped(p.seq);
    this.pushQueue = [];
    this.queuedBytes = 0;
  }

  /** A stored record of this device (live push); anything it cannot take now is read later. */
  offer(seq: number, record: Uint8Array, traceparent?: string): void {
    if (this.known(seq) || this.push(seq, record, traceparent)) return;
    this.dropped(seq);
    this.wake();
  }

  /** Already sent or queued: nothing to do for this sequence. */
  private known(seq: number): boolean {
    return seq <= this.cursor || this.inFlight.has(seq) || this.pushQueue.some((p) => p.seq === seq);
  }

  /** A hint with the sequence only (mail stored by another instance): fetch exactly that message. */
  private fetchAndPush(seq: number): void {
    if (this.known(seq)) return;
    // No room: a read finds it (and no get is spent on a record push would refuse).
    if (!this.queuing || this.queueFull(0)) {
      this.wake();
      return;
    }
    const fetched = this.d.mailboxes.bySeq(this.loc.stream, seq);
    fetched.catch(() => {}); // Observed by the run loop.
    if (!this.push(seq, fetched)) this.wake();
  }

  /** The push queue cannot take a record of `bytes` more (one record always fits). */
  private queueFull(bytes: number): boolean {
    return this.pushQueue.length >= QUEUE_WINDOWS * this.window || (this.queuedBytes + bytes > QUEUE_MAX_BYTES && this.pushQueue.length > 0);
  }

  /**
   * Queues a record this stream does not know yet (callers check known()) if the stream is
   * at the head of its mailbox (or a read pass may end there) and the queue has room. Queued
   * records wait for room in the window in memory: under load the window is often full for a
   * moment, and dropping the record then meant reading it back from the stream (a quarter to
   * a half of the Session bench's deliveries were such reads). At most QUEUE_WINDOWS windows
   * of records and QUEUE_MAX_BYTES (one record always fits).
   */
  private push(seq: number, record: Uint8Array | Promise<StreamMsg | null>, traceparent?: string): boolean {
    if (!this.queuing || this.ended) return false;
    const bytes = record instanceof Uint8Array ? record.length : 0;
    if (this.queueFull(bytes)) return false;
    this.queuedBytes += bytes;
    // A record is the storing Send's own buffer, never written again: shared, not copied.
    this.pushQueue.push({ seq, record, traceparent });
    this.nudge();
    return true;
  }

  private onSignal(s: DeviceSignal | undefined): void {
    if (!s) return;
    switch (s.kind) {
      case "mail":
        if (s.seq === undefined) this.wake();
        else this.fetchAndPush(s.seq);
        return;
      case "acked":
        this.acked(s.sequences);
        return;
      case "acking":
        // Whatever knownStoredUpTo counts: in flight, queued, or dropped from the queue.
        for (const q of s.sequences)
          if (this.inFlight.has(q) || this.droppedSet?.has(q) || this.pushQueue.some((p) => p.seq === q)) (this.ackingElsewhere ??= new Set()).add(q);
        return;
      case "ephemeral":
        if (!isRecord(s.record)) return;
        if (this.ephemeral.length >= MAX_EPHEMERAL_QUEUE) this.ephemeral.shift();
        this.ephemeral.push(s.record.slice());
        this.nudge();
        return;
      case "takeover":
        if (s.streamId === this.streamId) return;
        this.highestTakeover = Math.max(this.highestTakeover, s.order);
        if (this.order !== undefined && s.order > this.order) this.end("replaced");
        return;
      case "revoked":
        this.end("revoked");
        return;
    }
  }

  end(reason: "replaced" | "revoked" | "expired" | "unavailable"): void {
    this.ended ??= reason;
    this.wake();
  }

  /** Claims the device: the receivers bucket's revision orders streams across instances. */
  private async claim(): Promise<void> {
    if (this.order !== undefined || this.closed) return;
    // A retried claim (the first failed: NATS down) must not take over from a stream that
    // claimed meanwhile and may be newer; both staying open is the harmless choice.
    if (this.claimTried && this.highestTakeover > 0) return;
    this.claimTried = true;
    try {
      const value = Buffer.from(this.streamId);
      const order = await (this.d.claim ? this.d.claim(this.key, value) : this.d.receivers.put(this.key, value));
      // Closed while the write was in flight (the client gave up and may have opened a newer
      // stream elsewhere, which claimed first): a takeover now would end that live stream.
      if (this.closed) return;
      this.order = order;
      this.d.nats.publisher.publishCore(
        notifySubject(this.device.accountId, this.device.deviceId),
        encodeSignal({ kind: "takeover", order, streamId: this.streamId }),
      );
      if (this.highestTakeover > order) this.end("replaced");
    } catch {
      // Store unreachable: retried at the next poke; until then we simply are not the owner of record.
    }
  }

  /** After a NATS reconnect a takeover hint may have been lost: ask the bucket who owns the device. */
  async verifyOwner(): Promise<void> {
    if (this.order === undefined) return this.claim();
    try {
      const e = await this.d.receivers.get(this.key);
      if (e && e.revision > this.order && new TextDecoder().decode(e.value) !== this.streamId) this.end("replaced");
    } catch {
      // Best effort.
    }
  }

  /**
   * Releases the subscription and leaves the hub. Runs on abort too, not only when the
   * generator finishes: a generator parked at a yield whose consumer is gone must not leak.
   */
  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.waiter = undefined;
    try {
      this.sub?.unsubscribe();
    } catch {
      // Connection already closed.
    }
    this.onClose();
    // Mail pushed to this stream in memory went out without a hint while it was the owner.
    // If any of it is unacked, a newer stream of the device (here or on another instance,
    // e.g. the one that replaced this one) may be waiting at its head: tell it to read.
    if (this.inFlight.size || this.pushQueue.length) this.d.mailboxes.signal(this.device, { kind: "mail" });
  }

  async *run(signal: StopSignal): AsyncGenerator<ReceiveResponse> {
    const onAbort = () => {
      this.wake();
      this.close();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    let drained = false;
    let outageSince = 0;
    try {
      try {
        this.sub = this.d.nats.publisher.subscribe(
          notifySubject(this.device.accountId, this.device.deviceId),
          (msg) => this.onSignal(decodeSignal(msg.data)),
          () => this.end("unavailable"),
        );
      } catch (err) {
        // Connection closed or draining (instance shutting down): the client should go elsewhere.
        throw unavailable("subscribing to mail hints", err);
      }
      // The SUB goes out with this turn's batched write; the first read must not go ahead of
      // it. Reads of replicated streams are the NATS client's own requests, written at once:
      // one that overtook the SUB missed mail stored before the SUB arrived, whose hint found
      // no interest (the fault suite saw a sender's first message delivered 27 messages late).
      await this.d.nats.publisher.flushed();
      // Claim in the background: catch-up does not wait for the bucket write.
      void this.claim();
      while (!signal.aborted) {
        if (this.ended === "replaced") {
          this.close();
          yield create(ReceiveResponseSchema, { event: { case: "replaced", value: create(ReplacedSchema) } });
          return;
        }
        if (this.ended === "revoked") {
          throw new ConnectError(`device ${this.device.accountId}/${this.device.deviceId} was revoked`, Code.Unauthenticated);
        }
        if (this.ended === "expired") throw new ConnectError("token expired; authenticate again and reopen the stream", Code.Unauthenticated);
        if (this.ended === "unavailable") throw unavailable("subscribing to mail hints", new Error("NATS connection closed"));
        this.dirty = false;
        while (this.ephemeral.length) yield ephemeralResponse(this.ephemeral.shift()!);
        try {
          while (this.pushQueue.length && this.inFlight.size < this.window && !this.ended && !signal.aborted) {
            const p = this.pushQueue.shift()!;
            if (p.record instanceof Uint8Array) this.queuedBytes -= p.record.length;
            if (p.seq <= this.cursor || this.inFlight.has(p.seq)) continue;
            let data: Uint8Array | undefined;
            let traceparent = p.traceparent;
            if (p.record instanceof Uint8Array) data = p.record;
            else {
              const m = await p.record.catch(() => null);
              data = m && m.subject === this.loc.subject ? m.data : undefined;
              traceparent = m?.header?.get("traceparent") || undefined;
            }
            if (!data) {
              // Gone (acked elsewhere) or not visible yet: let a read decide, and drop the
              // later pushes too, so none of them overtakes this one (per-sender order).
              this.dropQueue();
              this.wake();
              break;
            }
            if (p.seq <= this.cursor || this.inFlight.has(p.seq)) continue;
            const out = await this.message(p.seq, data, true);
            if (!out) continue;
            if (p.record instanceof Uint8Array) this.d.metrics?.livePushed();
            else this.d.metrics?.read();
            this.d.tracing?.delivered(traceparent, {
              "sealpost.delivery": p.record instanceof Uint8Array ? "live-push" : "fetched",
              "sealpost.bytes": data.length,
            });
            (this.pushedSet ??= new Set()).add(p.seq);
            this.pushHigh = Math.max(this.pushHigh, p.seq);
            yield out;
            while (this.ephemeral.length) yield ephemeralResponse(this.ephemeral.shift()!);
          }
          if (!this.needRead) {
            if (!this.dirty && !this.ended && !signal.aborted) await new Promise<void>((r) => (this.waiter = r));
            continue;
          }
          this.needRead = false;
          if (this.periodic) {
            this.periodic = false;
            if (this.order === undefined) await this.claim();
            if (this.inFlight.size >= this.window) await this.reconcile();
          }
          let caughtUp = false;
          // Anything queued was stored before this pass and is found by it, in order.
          this.dropQueue();
          const reader = (this.reader = new MailboxReader(this.d.mailboxes, this.loc, this.cursor));
          while (this.inFlight.size < this.window && !this.ended && !signal.aborted) {
            const m = await reader.next(this.window - this.inFlight.size);
            if (!m) {
              caughtUp = true;
              // Nothing stored after the cursor: every pushed sequence above it was acked.
              this.cursor = Math.max(this.cursor, this.pushHigh);
              this.pushedSet?.clear();
              break;
            }
            this.cursor = m.seq;
            if (this.pushedSet?.delete(m.seq) || this.inFlight.has(m.seq)) {
              // Sent by push already (or in flight from before a reconnect of hints): skip.
              reader.prefetch();
              continue;
            }
            const out = await this.message(m.seq, m.data);
            if (!out) continue;
            this.d.metrics?.read();
            this.d.tracing?.delivered(m.header?.get("traceparent") || undefined, { "sealpost.delivery": "read", "sealpost.bytes": m.data.length });
            // The next read is issued while this message is being written (one ahead).
            if (this.inFlight.size < this.window) reader.prefetch();
            yield out;
            while (this.ephemeral.length) yield ephemeralResponse(this.ephemeral.shift()!);
          }
          // The window may be full exactly at the end of the backlog: Drained is a marker and
          // needs no free slot, so peek once (a client may wait for Drained before acking).
          if (!drained && !caughtUp && this.inFlight.size >= this.window && !this.ended) {
            caughtUp = !(await reader.next(1));
          }
          this.reader = undefined;
          outageSince = 0;
          // At the head unless something asked for another read meanwhile. Mail queued during
          // the pass lies above everything it read (stored after its last read, which found
          // nothing more); if the pass did not end at the head, a later pass reads it in order.
          if (caughtUp && !this.needRead) this.atHead = true;
          else this.dropQueue();
          // What the pass read past is delivered or gone.
          if (this.droppedSet) for (const q of this.droppedSet) if (q <= this.cursor) this.droppedSet.delete(q);
          if (caughtUp && !drained) {
            drained = true;
            yield create(ReceiveResponseSchema, { event: { case: "drained", value: create(DrainedSchema, { lastSequence: BigInt(this.lastSent) }) } });
          }
        } catch (err) {
          if (err instanceof ConnectError) throw err;
          // NATS restarting or a leader moving: keep the stream, retry shortly.
          const now = this.d.now();
          outageSince ||= now;
          this.reader = undefined;
          this.dropQueue();
          if (now - outageSince > STORE_OUTAGE_MS) throw new ConnectError("message store unavailable; reconnect", Code.Unavailable);
          await sleep(250, signal);
          this.dirty = true;
          this.needRead = true;
        }
        if (!this.dirty && !this.ended && !signal.aborted) await new Promise<void>((r) => (this.waiter = r));
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.close();
    }
  }

  /** The response for one stored record (in flight from now on), or undefined for an unreadable one. */
  private async message(seq: number, data: Uint8Array, live = false): Promise<ReceiveResponse | undefined> {
    let rec: MailboxRecord;
    try {
      rec = decodeRecord(data);
    } catch {
      this.d.log.warn("skipping an unreadable mailbox record", { stream: this.loc.stream, seq });
      return undefined;
    }
    // A body shares the mail's 30-day max_age but was stored just before it; if it
    // is gone the mail is about to expire too: deliver it with an empty body.
    const body = rec.body ?? (await this.d.mailboxes.getBody(rec.bodyKey!)) ?? new Uint8Array(0);
    (this.inFlightSet ??= new Set()).add(seq);
    this.lastSent = Math.max(this.lastSent, seq);
    // Store-to-stream time of mail that arrived while the stream was open (not catch-up of old mail).
    if (live) this.d.metrics?.liveDeliveryLag((this.d.now() - rec.timestampMs) / 1000);
    return messageEvent(toMailboxMessage(rec, seq, body));
  }

  /**
   * Frees window slots whose ack hint was lost: every in-flight sequence below the first
   * message still stored for this device has been acked (or expired). One get.
   */
  private async reconcile(): Promise<void> {
    if (!this.inFlight.size) return;
    const lowest = Math.min(...this.inFlight);
    const m = await this.d.mailboxes.next(this.loc, lowest - 1);
    const limit = m ? m.seq : Infinity;
    for (const s of this.inFlight) if (s < limit) this.inFlightSet?.delete(s);
  }
}

const NONE: ReadonlySet<number> = new Set();

function isRecord(b: Uint8Array): boolean {
  try {
    decodeRecord(b);
    return true;
  } catch {
    return false;
  }
}

function ephemeralResponse(record: Uint8Array): ReceiveResponse {
  const rec = decodeRecord(record);
  return messageEvent(toMailboxMessage(rec, 0, rec.body ?? new Uint8Array(0)));
}

function sleep(ms: number, signal: StopSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** A ReceiveResponse carrying one message (a plain protobuf-es object: one per delivered message). */
function messageEvent(value: MailboxMessage): ReceiveResponse {
  return { $typeName: "sealpost.delivery.v1.ReceiveResponse", event: { case: "message", value } };
}
