/**
 * Per-device send rate limit: an in-memory token bucket per instance. With N instances behind
 * a balancer a device gets at most N times the rate, which is fine for abuse control; exact
 * global limits would cost a NATS round trip per Send.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number,
  ) {
    this.perMs = perMinute / 60_000;
  }

  /** Takes one token for `key`; false when the bucket is empty. */
  take(key: string): boolean {
    const t = this.now();
    const b = this.buckets.get(key);
    if (!b) {
      this.buckets.set(key, { tokens: this.perMinute - 1, at: t });
      return true;
    }
    b.tokens = Math.min(this.perMinute, b.tokens + (t - b.at) * this.perMs);
    b.at = t;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forgets buckets that have refilled completely (equivalent to absent), bounding memory. */
  prune(): void {
    const t = this.now();
    for (const [k, b] of this.buckets) {
      if (b.tokens + (t - b.at) * this.perMs >= this.perMinute) this.buckets.delete(k);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}
