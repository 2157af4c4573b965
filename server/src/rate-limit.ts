/**
 * Token buckets per key (e.g. "<account>/<device>" or a caller address), in memory, per
 * server instance: with N instances behind a balancer a key gets up to N times the configured
 * rate. That bounds abuse cheaply; a cluster-wide limit would cost a NATS round trip per call.
 * A key's first call finds a full bucket (burst = perMinute), which refills at perMinute.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number,
    /** Above this many buckets take() prunes full ones (memory bound without a timer). */
    private readonly pruneAbove = 100_000,
  ) {
    this.perMs = perMinute / 60_000;
  }

  /** Takes one token for `key`; false when the bucket is empty. */
  take(key: string): boolean {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.perMinute < 1) return false;
      this.buckets.set(key, (b = { tokens: this.perMinute - 1, at: t }));
      if (this.buckets.size > this.pruneAbove) this.prune();
      return true;
    }
    b.tokens = Math.min(this.perMinute, b.tokens + (t - b.at) * this.perMs);
    b.at = t;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Seconds until `key` has a token again, for the error message. */
  retryAfterSeconds(key: string): number {
    const b = this.buckets.get(key);
    if (!b || this.perMinute <= 0) return 60;
    return Math.max(1, Math.ceil(((1 - b.tokens) * 60) / this.perMinute));
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
