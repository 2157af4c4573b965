/**
 * The end of a call as the code producing its messages sees it: aborted when the client goes
 * away or the instance shuts down. An AbortSignal is one. Streams served natively use
 * CallStop instead: ~100 bytes where an AbortController with its signal (an EventTarget with
 * two maps and a shape of its own) costs ~800, and an idle Receive stream holds it for hours.
 */
export interface StopSignal {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

export class CallStop implements StopSignal {
  aborted = false;
  private listeners: (() => void)[] | undefined;

  /** Aborts once: every listener runs (once), as an AbortSignal's would. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const listeners = this.listeners;
    this.listeners = undefined;
    for (const l of listeners ?? []) {
      try {
        l();
      } catch (err) {
        // As EventTarget does: the others still run, the error surfaces as uncaught.
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }

  addEventListener(_type: "abort", listener: () => void, _options?: { once?: boolean }): void {
    // Like an AbortSignal's: a listener added after the abort never runs.
    if (this.aborted) return;
    if (this.listeners) this.listeners.push(listener);
    else this.listeners = [listener]; // exactly one slot: a stream mostly has one listener
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const i = this.listeners?.indexOf(listener) ?? -1;
    if (i >= 0) this.listeners!.splice(i, 1);
  }
}
