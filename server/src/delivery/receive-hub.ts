/**
 * The Receive streams open on this instance: one sweep timer for all of them (no per-stream
 * timers: the periodic check and the token's expiry), the NATS-reconnect re-check, and the
 * local lookup Ack uses to prove that a sequence belongs to the caller without a read.
 */
import type { Nats } from "../nats/connection.js";
import type { ReceiveStream } from "./receive-stream.js";

/** Every stream looks at its mailbox on its own at least this often (lost-hint safety net). */
export const CHECK_INTERVAL_MS = 30_000;
const SWEEP_MS = 1_000;
/** Core-NATS subject on which an instance that reconnected asks every instance to re-check its streams. */
export const RECHECK_SUBJECT = "sp.recheck";

const NO_STREAMS: readonly ReceiveStream[] = Object.freeze([]);

export class ReceiveHub {
  /**
   * account -> its devices' streams here (normally one per device, a few per account). An
   * array, not maps of sets: each of those cost ~300 bytes per idle stream.
   */
  private readonly byAccount = new Map<string, ReceiveStream[]>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    nats: Nats,
    private readonly now: () => number,
    private readonly checkIntervalMs = CHECK_INTERVAL_MS,
  ) {
    this.timer = setInterval(() => this.sweep(), Math.min(SWEEP_MS, checkIntervalMs));
    this.timer.unref();
    // Hints this instance published just before losing NATS may be gone too, and live push
    // means a later hint no longer makes a stream read past a lost one: every instance
    // re-checks its streams when any instance reconnects.
    nats.nc.subscribe(RECHECK_SUBJECT, { callback: () => this.recheckAll() });
    void (async () => {
      for await (const s of nats.nc.status()) {
        if (this.closed) break;
        // Hints published while we were disconnected are gone: re-check everything.
        if (s.type === "reconnect") {
          this.recheckAll();
          try {
            nats.nc.publish(RECHECK_SUBJECT);
          } catch {
            // Disconnected again: the next reconnect asks again.
          }
        }
      }
    })().catch(() => {});
  }

  get size(): number {
    let n = 0;
    for (const _ of this.all()) n++;
    return n;
  }

  private *all(): Iterable<ReceiveStream> {
    for (const streams of this.byAccount.values()) yield* streams;
  }

  add(s: ReceiveStream): void {
    const streams = this.byAccount.get(s.device.accountId);
    if (!streams) this.byAccount.set(s.device.accountId, [s]);
    else if (!streams.includes(s)) streams.push(s);
    // Spread checks over the interval so 10k streams do not all look at once.
    s.nextCheckAt = this.now() + this.checkIntervalMs * (0.5 + Math.random() / 2);
  }

  remove(s: ReceiveStream): void {
    const streams = this.byAccount.get(s.device.accountId);
    const i = streams?.indexOf(s) ?? -1;
    if (i < 0) return;
    streams!.splice(i, 1);
    if (!streams!.length) this.byAccount.delete(s.device.accountId);
  }

  /** Streams of one device on this instance (normally at most one; no new array then: Send asks per message). */
  streamsOf(accountId: string, deviceId: number): readonly ReceiveStream[] {
    const streams = this.byAccount.get(accountId);
    if (!streams) return NO_STREAMS;
    if (streams.length === 1) return streams[0].device.deviceId === deviceId ? streams : NO_STREAMS;
    return streams.filter((s) => s.device.deviceId === deviceId);
  }

  /** Streams of any device of one account on this instance (a copy: callers may end them meanwhile). */
  streamsOfAccount(accountId: string): ReceiveStream[] {
    return [...(this.byAccount.get(accountId) ?? [])];
  }

  recheckAll(): void {
    for (const s of this.all()) {
      s.poke();
      void s.verifyOwner();
    }
  }

  private sweep(): void {
    const t = this.now();
    for (const s of this.all()) {
      if (s.expiresAtMs !== undefined && t >= s.expiresAtMs) s.end("expired");
      if (t < s.nextCheckAt) continue;
      s.nextCheckAt = t + this.checkIntervalMs;
      s.poke();
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }
}
