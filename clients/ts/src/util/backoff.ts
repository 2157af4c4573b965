/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and
 * Jitter"): the n-th wait is uniform in [0, min(max, base * 2^n)], so many clients that lost
 * the same server do not come back in lockstep. `random` is injectable for tests.
 */
export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  /** Uniform in [0, 1). */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 250;
    this.maxMs = opts.maxMs ?? 15_000;
    this.random = opts.random ?? Math.random;
  }

  /** The next delay in ms (at least 10 ms, so a tight failure loop still yields). */
  next(): number {
    const cap = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    return Math.max(10, Math.floor(this.random() * cap));
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Runs `fn` until it succeeds, throws something `retryable` says no to, or `attempts` ran
 * out (then the last error), waiting a Backoff delay between tries; an aborted `signal`
 * ends the waiting at once and the last error is thrown.
 */
export async function retry<T>(
  fn: () => Promise<T>,
  opts: { attempts: number; retryable: (err: unknown) => boolean; backoff?: BackoffOptions; signal?: AbortSignal },
): Promise<T> {
  const backoff = new Backoff(opts.backoff);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= opts.attempts || !opts.retryable(err) || opts.signal?.aborted) throw err;
      await sleep(backoff.next(), opts.signal);
    }
  }
}
