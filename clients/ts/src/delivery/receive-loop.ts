/**
 * The receive loop: one Receive stream at a time, resumed after the stored cursor, re-opened
 * with backoff and jitter whenever it ends or fails (server restart, network loss, token
 * expiry), until stopped.
 *
 * Durability order per message: process (decrypt, store locally) -> save cursor + pending ack
 * -> Ack. The cursor is the highest sequence of the backlog (before Drained): live mail can
 * come out of sequence order, so resuming after its sequences could skip mail; acked mail is
 * deleted, so resuming from the backlog's end costs nothing but unacked mail again. A crash
 * before the save redelivers the message on the next stream; processing dedupes by
 * message_id. Acks not confirmed yet are kept with the cursor and sent again on
 * the next connect, so nothing processed lingers in the server's mailbox. A processing
 * failure that may be transient (e.g. the directory was unreachable) ends the stream without
 * advancing the cursor, so the message comes again.
 *
 * Poison messages: a message whose processing fails for a reason other than the environment
 * (network, server, disk: failure-kinds.ts) MAX_DELIVERY_ATTEMPTS times is dropped, reported
 * as a `receive-problem` event (no plaintext) and acked, so it cannot make the loop reconnect
 * forever. An ack the server rejects for good (INVALID_ARGUMENT, PERMISSION_DENIED, ...) is
 * dropped and reported too; transient ack failures are kept and retried. A failed state write
 * is reported and does not poison later writes.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { Backoff, sleep, type BackoffOptions } from "../util/backoff.js";
import type { ConversationStore, ReceiveState } from "../store/conversation-store.js";
import type { MessengerEvent } from "../core/events.js";
import { isEnvironmentFailure } from "../transport/failure-kinds.js";
import { type MessengerError, messengerErrorOf } from "../core/messenger-errors.js";
import type { ServerApi } from "../transport/server-api.js";

/** At most this many sequences per Ack (the server takes up to 1000). */
const ACK_BATCH = 500;
/**
 * An ack waits this long for the next messages of a burst, so one Ack covers them (the server
 * deletes a batch with one purge where it would delete one message at a time). Every purge
 * or delete is a JetStream API request, ~30 us of nats-server CPU before any work
 * (bench/src/persist-cost-probe.ts), so fewer, larger Acks are cheaper: 5 ms took ~10% off
 * the server-side CPU per message of the benchmark's Session load against one Ack per
 * message, 20 ms another ~5%. Acked mail stays on the server that much longer. Pending acks
 * are saved with the receive state, so a crash inside the delay only means they are sent at
 * the next start.
 */
export const ACK_DELAY_MS = 20;
/** Deliveries of one message that fail (not for environment reasons) before it is dropped. */
export const MAX_DELIVERY_ATTEMPTS = 3;

export interface ReceiveLoopDeps {
  api: ServerApi;
  store: ConversationStore;
  emit: (e: MessengerEvent) => void;
  /** Decrypts and stores one message; throws only for failures worth a retry. */
  process: (m: MailboxMessage) => Promise<void>;
  /** This device was revoked, its store is damaged, or another stream replaced this one: the loop stops. */
  onFatal: (err: MessengerError | "replaced") => void;
  backoff?: BackoffOptions;
  maxInFlight?: number;
}

export class ReceiveLoop {
  private stopped = true;
  private abort = new AbortController();
  private running?: Promise<void>;
  private state?: ReceiveState;
  private saving: Promise<void> = Promise.resolve();
  private acking?: Promise<void>;
  private ackAgain = false;
  private readonly backoff: Backoff;
  private drainedWaiters: (() => void)[] = [];
  private drainedOnce = false;
  /** Failed deliveries by mailbox sequence (this run). */
  private readonly failures = new Map<number, number>();

  constructor(private readonly d: ReceiveLoopDeps) {
    this.backoff = new Backoff(d.backoff);
  }

  get isRunning(): boolean {
    return !this.stopped;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.drainedOnce = false;
    this.abort = new AbortController();
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.running;
    await this.acking;
    await this.saving.catch(() => {});
  }

  /** Resolves once a stream has sent Drained (the backlog is processed). */
  drained(): Promise<void> {
    if (this.drainedOnce) return Promise.resolve();
    return new Promise((r) => this.drainedWaiters.push(r));
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.d.emit({ type: "connection", state: "connecting" });
      const abort = new AbortController();
      const onStop = () => abort.abort();
      this.abort.signal.addEventListener("abort", onStop, { once: true });
      try {
        this.state ??= await this.d.store.getReceiveState();
        await this.flushAcks();
        const stream = this.d.api.delivery.receive(
          { afterSequence: BigInt(this.state.cursor), maxInFlight: this.d.maxInFlight ?? 0 },
          { signal: abort.signal },
        );
        let online = false;
        // Mail after Drained may arrive out of sequence order (stored at the same time through
        // different server instances): the cursor advances with backlog mail only.
        let live = false;
        for await (const res of stream) {
          if (!online) {
            online = true;
            this.backoff.reset();
            this.d.emit({ type: "connection", state: "online" });
          }
          const ev = res.event;
          if (ev.case === "message") await this.handle(ev.value, live);
          else if (ev.case === "drained") {
            live = true;
            this.d.emit({ type: "drained", lastSequence: Number(ev.value.lastSequence) });
            this.drainedOnce = true;
            for (const w of this.drainedWaiters.splice(0)) w();
          } else if (ev.case === "replaced") {
            this.stopped = true;
            this.d.onFatal("replaced");
          }
          if (this.stopped) break;
        }
      } catch (err) {
        if (this.stopped) break;
        const fatal = messengerErrorOf(err);
        if (fatal?.code === "device_revoked" || fatal?.code === "store_damaged") {
          this.stopped = true;
          this.d.onFatal(fatal);
          break;
        }
        // An expired token ends the stream with UNAUTHENTICATED: authenticate afresh.
        if (err instanceof ConnectError && err.code === Code.Unauthenticated) this.d.api.invalidate();
        this.d.emit({ type: "connection", state: "offline", error: err instanceof Error ? err.message : String(err) });
      } finally {
        this.abort.signal.removeEventListener("abort", onStop);
        abort.abort();
      }
      if (!this.stopped) await sleep(this.backoff.next(), this.abort.signal);
    }
    this.d.emit({ type: "connection", state: "offline" });
  }

  /** Messages processed since start, and the last one's lag: processed (local clock) minus stored (server clock). */
  received = 0;
  lastLagMs: number | undefined;

  private async handle(m: MailboxMessage, live: boolean): Promise<void> {
    const seq = Number(m.sequence);
    try {
      await this.d.process(m);
      this.failures.delete(seq);
      if (!m.ephemeral) {
        this.received++;
        if (m.serverTimestampMs > 0n) this.lastLagMs = Math.max(0, Date.now() - Number(m.serverTimestampMs));
      }
    } catch (err) {
      if (this.stopped || m.ephemeral || isEnvironmentFailure(err)) throw err;
      const n = (this.failures.get(seq) ?? 0) + 1;
      this.failures.set(seq, n);
      if (n < MAX_DELIVERY_ATTEMPTS) throw err;
      this.failures.delete(seq);
      this.d.emit({
        type: "receive-problem",
        problem: "poison-dropped",
        sequence: seq,
        from: m.sender ? { accountId: m.sender.accountId, deviceId: m.sender.deviceId } : undefined,
        detail: `dropped after ${n} failed deliveries; last error: ${err instanceof Error ? err.name : typeof err}`,
      });
    }
    if (m.ephemeral) return;
    const state = this.state!;
    // A live message's sequence may be above mail not delivered yet: resuming after it would
    // skip that mail. Backlog mail comes in sequence order with nothing left out below it.
    if (!live && seq > state.cursor) state.cursor = seq;
    state.pendingAcks.push(seq);
    await this.save();
    this.kickAcks();
  }

  /** Acks in the background, one flush at a time (ACK_DELAY_MS after the first pending ack); a failed flush is retried on the next message or connect. */
  private kickAcks(): void {
    if (this.acking) {
      this.ackAgain = true;
      return;
    }
    this.acking = sleep(ACK_DELAY_MS, this.abort.signal)
      .then(() => this.flushAcks())
      .catch(() => {})
      .finally(() => {
        this.acking = undefined;
        if (this.ackAgain && !this.stopped) {
          this.ackAgain = false;
          this.kickAcks();
        }
      });
  }

  /** Persists the state; writes are serialized so the newest state always lands last. */
  private save(): Promise<void> {
    const snapshot = structuredClone(this.state!);
    // A failed write must not fail every later one: each write starts after the previous settled.
    const next = this.saving
      .catch(() => {})
      .then(() => this.d.store.setReceiveState(snapshot))
      .catch((err: unknown) => {
        this.d.emit({ type: "receive-problem", problem: "state-save-failed", detail: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
        throw err;
      });
    this.saving = next;
    return next;
  }

  private async flushAcks(): Promise<void> {
    const state = this.state;
    while (state && state.pendingAcks.length > 0) {
      const batch = state.pendingAcks.slice(0, ACK_BATCH);
      await this.ackBatch(batch);
      const done = new Set(batch);
      state.pendingAcks = state.pendingAcks.filter((s) => !done.has(s));
      await this.save();
    }
  }

  /**
   * Acks `batch`. A batch the server rejects for good is acked again one sequence at a time,
   * and a sequence rejected on its own is dropped (reported): it would be rejected forever and
   * block receiving, since pending acks are flushed before every stream opens.
   */
  private async ackBatch(batch: number[]): Promise<void> {
    try {
      await this.d.api.channel.ack({ sequences: batch.map(BigInt) });
    } catch (err) {
      if (!isRejectedAck(err)) throw err;
      if (batch.length > 1) {
        for (const seq of batch) await this.ackBatch([seq]);
        return;
      }
      this.d.emit({ type: "receive-problem", problem: "ack-rejected", sequence: batch[0], detail: (err as ConnectError).rawMessage });
    }
  }
}

/** The server refused the ack itself (not the connection, not this device's token). */
function isRejectedAck(err: unknown): boolean {
  if (!(err instanceof ConnectError) || messengerErrorOf(err)) return false;
  switch (err.code) {
    case Code.InvalidArgument:
    case Code.PermissionDenied:
    case Code.NotFound:
    case Code.OutOfRange:
      return true;
    default:
      return false;
  }
}
