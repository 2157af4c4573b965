/**
 * Token buckets per key (e.g. "claim:<account>.<device>"), in memory, per server instance:
 * with N instances behind a balancer a device gets up to N times the configured rate. That
 * bounds abuse cheaply; a cluster-wide limit would cost a KV round trip per call.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number,
  ) {}

  /** Takes one token; false when the bucket is empty. */
  take(key: string): boolean {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.perMinute, at: t };
    b.tokens = Math.min(this.perMinute, b.tokens + ((t - b.at) * this.perMinute) / 60_000);
    b.at = t;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      return false;
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
    if (this.buckets.size > 100_000) this.prune(t);
    return true;
  }

  /** Seconds until the next token, for the error message. */
  retryAfterSeconds(key: string): number {
    const b = this.buckets.get(key);
    if (!b || this.perMinute <= 0) return 60;
    return Math.max(1, Math.ceil(((1 - b.tokens) * 60) / this.perMinute));
  }

  // Full buckets carry no information; dropping them bounds memory.
  private prune(t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((t - b.at) * this.perMinute) / 60_000 >= this.perMinute) this.buckets.delete(k);
    }
  }
}
