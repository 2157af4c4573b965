/**
 * The wait of an open-loop load generator: until the next send is due by the clock (at least
 * one timer tick). Waking every millisecond whatever the rate made the generator wake five
 * times per message at 200 msg/s, and on this 2-core box its wake-ups compete with the
 * processes being measured.
 */
export function untilNextDue(t0: number, issued: number, rate: number): Promise<void> {
  const wait = t0 + (issued * 1000) / rate - performance.now();
  return new Promise((r) => setTimeout(r, Math.max(1, wait)));
}
