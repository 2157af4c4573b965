/**
 * The group layer's waiting content (a group message before its sender key, a sender key
 * before the state that adds its sender, a state that skips a version), in lists keyed by
 * ids the sender chose. Bounded three ways, so no sender can grow it without limit: items per
 * list, items in all lists, and bytes in all lists; when a bound is passed the oldest item
 * (of that list, or overall) is dropped and reported. Every item has a numeric id (its age),
 * and the queues remember which items were added and removed since the last save, so a save
 * writes only those (GroupPendingStore stores items one by one).
 */

export interface PendingLimits {
  /** Items per list. */
  perKey: number;
  /** Items in all lists together. */
  items: number;
  /** Bytes (serialized size) in all lists together. */
  bytes: number;
}

export interface PendingEntry<M, K extends keyof M = keyof M> {
  id: number;
  kind: K;
  key: string;
  item: M[K];
  bytes: number;
}

export class PendingQueues<M extends Record<string, unknown>> {
  private nextId = 1;
  private readonly lists = new Map<string, PendingEntry<M>[]>();
  /** Every entry by id; Map order is insertion order (restored items come first, oldest first). */
  private readonly all = new Map<number, PendingEntry<M>>();
  private totalBytes = 0;
  /** Entries added since the last takeChanges (not stored yet). */
  private readonly added = new Map<number, PendingEntry<M>>();
  /** Ids of stored entries removed since the last takeChanges. */
  private readonly removed = new Set<number>();

  constructor(
    private readonly limits: PendingLimits,
    private readonly onDrop: (entry: PendingEntry<M>, bound: "per-key" | "items" | "bytes") => void,
  ) {}

  /**
   * Adds an item at the end of its list. `stored` (restoring): the id it was stored under, so
   * it is not written again. Drops the oldest items while a bound is exceeded.
   */
  push<K extends keyof M & string>(kind: K, key: string, item: M[K], bytes: number, stored?: number): void {
    const id = stored ?? this.nextId;
    this.nextId = Math.max(this.nextId, id + 1);
    const entry: PendingEntry<M> = { id, kind, key, item, bytes };
    const lk = listKey(kind, key);
    const list = this.lists.get(lk) ?? [];
    list.push(entry);
    this.lists.set(lk, list);
    this.all.set(id, entry);
    this.totalBytes += bytes;
    if (stored === undefined) this.added.set(id, entry);
    if (list.length > this.limits.perKey) this.drop(list[0], "per-key");
    while (this.all.size > this.limits.items) this.drop(this.oldest(), "items");
    while (this.totalBytes > this.limits.bytes && this.all.size > 0) this.drop(this.oldest(), "bytes");
  }

  /** The items of one list, oldest first (a copy). */
  peek<K extends keyof M & string>(kind: K, key: string): M[K][] {
    return (this.lists.get(listKey(kind, key)) ?? []).map((e) => e.item as M[K]);
  }

  /** Removes and returns the items of one list, oldest first. */
  take<K extends keyof M & string>(kind: K, key: string): M[K][] {
    const list = [...(this.lists.get(listKey(kind, key)) ?? [])];
    for (const e of list) this.remove(e);
    return list.map((e) => e.item as M[K]);
  }

  /** Removes one item (by identity) from its list. */
  removeItem<K extends keyof M & string>(kind: K, key: string, item: M[K]): void {
    const e = this.lists.get(listKey(kind, key))?.find((x) => x.item === item);
    if (e) this.remove(e);
  }

  /** Keys of the lists of one kind that hold items. */
  keys<K extends keyof M & string>(kind: K): string[] {
    const out = new Set<string>();
    for (const e of this.all.values()) if (e.kind === kind) out.add(e.key);
    return [...out];
  }

  count(kind: keyof M & string): number {
    let n = 0;
    for (const e of this.all.values()) if (e.kind === kind) n++;
    return n;
  }

  get size(): number {
    return this.all.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /** What changed since the last call: entries to store, ids to delete. */
  takeChanges(): { put: PendingEntry<M>[]; removed: number[] } {
    const out = { put: [...this.added.values()], removed: [...this.removed] };
    this.added.clear();
    this.removed.clear();
    return out;
  }

  private oldest(): PendingEntry<M> {
    return this.all.values().next().value as PendingEntry<M>;
  }

  private drop(e: PendingEntry<M>, bound: "per-key" | "items" | "bytes"): void {
    this.remove(e);
    this.onDrop(e, bound);
  }

  private remove(e: PendingEntry<M>): void {
    if (!this.all.delete(e.id)) return;
    this.totalBytes -= e.bytes;
    const lk = listKey(e.kind as string, e.key);
    const list = this.lists.get(lk);
    if (list) {
      const i = list.indexOf(e);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.lists.delete(lk);
    }
    if (!this.added.delete(e.id)) this.removed.add(e.id);
  }
}

function listKey(kind: string, key: string): string {
  return `${kind}\u0000${key}`;
}
