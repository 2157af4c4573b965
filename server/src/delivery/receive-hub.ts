/**
 * The Receive streams open on this instance: one sweep timer for all of them (no per-stream
 * timers), the NATS-reconnect re-check, and the local lookup Ack uses to prove that a
 * sequence belongs to the caller without a read.
 */
import type { Nats } from "../nats/connection.js";
import type { ReceiveStream } from "./receive-stream.js";

/** Every stream looks at its mailbox on its own at least this often (lost-hint safety net). */
export const CHECK_INTERVAL_MS = 30_000;
const SWEEP_MS = 1_000;
/** Core-NATS subject on which an instance that reconnected asks every instance to re-check its streams. */
export const RECHECK_SUBJECT = "sp.recheck";

export class ReceiveHub {
  /** account -> device -> streams (normally one). */
  private readonly byAccount = new Map<string, Map<number, Set<ReceiveStream>>>();
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
    for (const devices of this.byAccount.values()) for (const set of devices.values()) yield* set;
  }

  add(s: ReceiveStream): void {
    let devices = this.byAccount.get(s.device.accountId);
    if (!devices) this.byAccount.set(s.device.accountId, (devices = new Map()));
    let set = devices.get(s.device.deviceId);
    if (!set) devices.set(s.device.deviceId, (set = new Set()));
    set.add(s);
    // Spread checks over the interval so 10k streams do not all look at once.
    s.nextCheckAt = this.now() + this.checkIntervalMs * (0.5 + Math.random() / 2);
  }

  remove(s: ReceiveStream): void {
    const devices = this.byAccount.get(s.device.accountId);
    const set = devices?.get(s.device.deviceId);
    if (!devices || !set) return;
    set.delete(s);
    if (!set.size) devices.delete(s.device.deviceId);
    if (!devices.size) this.byAccount.delete(s.device.accountId);
  }

  /** Streams of one device on this instance (normally at most one). */
  streamsOf(accountId: string, deviceId: number): Iterable<ReceiveStream> {
    return this.byAccount.get(accountId)?.get(deviceId) ?? [];
  }

  /** Streams of any device of one account on this instance. */
  *streamsOfAccount(accountId: string): Iterable<ReceiveStream> {
    for (const set of this.byAccount.get(accountId)?.values() ?? []) yield* [...set];
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
