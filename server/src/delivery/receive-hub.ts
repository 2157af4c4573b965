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

export class ReceiveHub {
  private readonly byDevice = new Map<string, Set<ReceiveStream>>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    nats: Nats,
    private readonly now: () => number,
    private readonly checkIntervalMs = CHECK_INTERVAL_MS,
  ) {
    this.timer = setInterval(() => this.sweep(), Math.min(SWEEP_MS, checkIntervalMs));
    this.timer.unref();
    void (async () => {
      for await (const s of nats.nc.status()) {
        if (this.closed) break;
        // Hints published while we were disconnected are gone: re-check everything.
        if (s.type === "reconnect") this.recheckAll();
      }
    })().catch(() => {});
  }

  get size(): number {
    let n = 0;
    for (const s of this.byDevice.values()) n += s.size;
    return n;
  }

  add(s: ReceiveStream): void {
    let set = this.byDevice.get(s.key);
    if (!set) this.byDevice.set(s.key, (set = new Set()));
    set.add(s);
    // Spread checks over the interval so 10k streams do not all look at once.
    s.nextCheckAt = this.now() + this.checkIntervalMs * (0.5 + Math.random() / 2);
  }

  remove(s: ReceiveStream): void {
    const set = this.byDevice.get(s.key);
    if (!set) return;
    set.delete(s);
    if (!set.size) this.byDevice.delete(s.key);
  }

  /** Streams of one device on this instance (normally at most one). */
  streamsOf(accountId: string, deviceId: number): Iterable<ReceiveStream> {
    return this.byDevice.get(`${accountId}.${deviceId}`) ?? [];
  }

  recheckAll(): void {
    for (const set of this.byDevice.values()) {
      for (const s of set) {
        s.poke();
        void s.verifyOwner();
      }
    }
  }

  private sweep(): void {
    const t = this.now();
    for (const set of this.byDevice.values()) {
      for (const s of set) {
        if (t < s.nextCheckAt) continue;
        s.nextCheckAt = t + this.checkIntervalMs;
        s.poke();
      }
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }
}
