/**
 * A queue between a push-style stream (events, callbacks) and the runner's pull-style
 * `next(timeout)`. Shared by the stack adapters. After the end event, next() keeps
 * returning it.
 */
import type { StreamEvent } from "./stack.js";

export class EventQueue {
  readonly #items: StreamEvent[] = [];
  #waiter: ((e: StreamEvent) => void) | undefined;
  #end: StreamEvent | undefined;

  push(event: StreamEvent): void {
    if (this.#end) return;
    if (event.kind === "end") this.#end = event;
    const w = this.#waiter;
    if (w) {
      this.#waiter = undefined;
      w(event);
    } else this.#items.push(event);
  }

  next(timeoutMs: number): Promise<StreamEvent | undefined> {
    const item = this.#items.shift();
    if (item) return Promise.resolve(item);
    if (this.#end) return Promise.resolve(this.#end);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      this.#waiter = (e) => {
        clearTimeout(timer);
        resolve(e);
      };
    });
  }
}
