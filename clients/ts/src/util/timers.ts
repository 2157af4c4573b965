/** Timers on every platform. */

/** Lets a Node process exit while the timer waits (Node timers have unref(); a browser's are numbers). */
export function unrefTimer(t: ReturnType<typeof setTimeout>): void {
  (t as { unref?: () => void }).unref?.();
}
