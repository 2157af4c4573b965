/**
 * Fan-out of Messenger events to listeners and to async iterators. Each iterator sees every
 * event emitted after it was created, in order; ending the iteration (break / return)
 * unsubscribes it.
 */
import type { MessengerEvent } from "../core/events.js";

export type EventListener = (event: MessengerEvent) => void;

export class EventBus {
  private readonly listeners = new Set<EventListener>();
  private closed = false;
  private readonly closers = new Set<() => void>();

  emit(event: MessengerEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch {
        // A throwing listener must not break delivery to the others.
      }
    }
  }

  on(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** An async iterator over future events; ends when the bus closes. */
  subscribe(): AsyncIterableIterator<MessengerEvent> {
    const queue: MessengerEvent[] = [];
    let wake: (() => void) | undefined;
    let done = this.closed;
    const off = this.on((e) => {
      queue.push(e);
      wake?.();
    });
    const finish = () => {
      done = true;
      off();
      this.closers.delete(finish);
      wake?.();
    };
    this.closers.add(finish);
    const it: AsyncIterableIterator<MessengerEvent> = {
      [Symbol.asyncIterator]: () => it,
      next: async () => {
        for (;;) {
          const e = queue.shift();
          if (e) return { value: e, done: false };
          if (done) return { value: undefined, done: true };
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
      return: async () => {
        finish();
        return { value: undefined, done: true };
      },
    };
    return it;
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.closers]) c();
  }
}
