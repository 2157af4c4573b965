/**
 * Maps items through an async function one at a time, in order: for steps that draw from a
 * deterministic random source or advance shared state (a sending chain), where running them
 * side by side (Promise.all over a map) would interleave them.
 */
export async function mapInOrder<T, R>(items: readonly T[], f: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i++) out.push(await f(items[i], i));
  return out;
}
