/**
 * Per-key mutual exclusion for async work: runs of one key happen one after another, in call
 * order; runs of different keys overlap freely. A run that fails does not block the next one.
 * A free key starts its run at once (no extra microtask), and keys are forgotten when their
 * last run settles, so the map only holds keys with work in flight.
 *
 *   const locks = new KeyedLock();
 *   await locks.run(addressKey(device), async () => { load; modify; save; });
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` once every earlier run of `key` settled; resolves or rejects with its result. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key);
    let run: Promise<T>;
    if (prev) run = prev.then(fn, fn);
    else {
      try {
        run = fn();
      } catch (e) {
        run = Promise.reject(e);
      }
    }
    // Anonymous callbacks: a named closure per run costs a defineProperty under tsx (keepNames).
    const tail: Promise<unknown> = run.then(
      () => this.release(key, tail),
      () => this.release(key, tail),
    );
    this.tails.set(key, tail);
    return run;
  }

  private release(key: string, tail: Promise<unknown>): void {
    if (this.tails.get(key) === tail) this.tails.delete(key);
  }

  /** Keys with a run in flight or queued. */
  get size(): number {
    return this.tails.size;
  }
}
