/**
 * The receive loop: one Receive stream at a time, resumed after the stored cursor, re-opened
 * with backoff and jitter whenever it ends or fails (server restart, network loss, token
 * expiry), until stopped.
 *
 * Durability order per message: process (decrypt, store locally) -> save cursor + pending ack
 * -> Ack. A crash before the save redelivers the message on the next stream; processing
 * dedupes by message_id. Acks not confirmed yet are kept with the cursor and sent again on
 * the next connect, so nothing processed lingers in the server's mailbox. A processing
 * failure that may be transient (e.g. the directory was unreachable) ends the stream without
 * advancing the cursor, so the message comes again.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { Backoff, sleep, type BackoffOptions } from "./backoff.js";
import type { ConversationStore, ReceiveState } from "./conversation-store.js";
import type { MessengerEvent } from "./events.js";
import { MessengerError, messengerErrorOf } from "./messenger-errors.js";
import type { ServerApi } from "./server-api.js";

/** At most this many sequences per Ack (the server takes up to 1000). */
const ACK_BATCH = 500;

export interface ReceiveLoopDeps {
  api: ServerApi;
  store: ConversationStore;
  emit: (e: MessengerEvent) => void;
  /** Decrypts and stores one message; throws only for failures worth a retry. */
  process: (m: MailboxMessage) => Promise<void>;
  /** This device was revoked (or another stream replaced this one): the loop stops. */
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
    await this.saving;
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
        const stream = this.d.api.delivery.receive({ afterSequence: BigInt(this.state.cursor), maxInFlight: this.d.maxInFlight ?? 0 }, { signal: abort.signal });
        let online = false;
        for await (const res of stream) {
          if (!online) {
            online = true;
            this.backoff.reset();
            this.d.emit({ type: "connection", state: "online" });
          }
          const ev = res.event;
          if (ev.case === "message") await this.handle(ev.value);
          else if (ev.case === "drained") {
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
        if (fatal?.code === "device_revoked") {
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

  private async handle(m: MailboxMessage): Promise<void> {
    await this.d.process(m);
    if (m.ephemeral) return;
    const state = this.state!;
    const seq = Number(m.sequence);
    if (seq > state.cursor) state.cursor = seq;
    state.pendingAcks.push(seq);
    await this.save();
    this.kickAcks();
  }

  /** Acks in the background, one flush at a time; a failed flush is retried on the next message or connect. */
  private kickAcks(): void {
    if (this.acking) {
      this.ackAgain = true;
      return;
    }
    this.acking = this.flushAcks()
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
    this.saving = this.saving.then(() => this.d.store.setReceiveState(snapshot));
    return this.saving;
  }

  private async flushAcks(): Promise<void> {
    const state = this.state;
    while (state && state.pendingAcks.length > 0) {
      const batch = state.pendingAcks.slice(0, ACK_BATCH);
      await this.d.api.delivery.ack({ sequences: batch.map(BigInt) });
      const done = new Set(batch);
      state.pendingAcks = state.pendingAcks.filter((s) => !done.has(s));
      await this.save();
    }
  }
}
