/**
 * Device lists from memory: the current list of recently used accounts, kept current by the
 * instance's KV watch, so authenticating a call and checking a Send's entries cost no store
 * read. Correct across instances by two rules (docs/ARCHITECTURE.md, "Device lists in memory"):
 *
 * - A lease: the cache answers only while it is *fresh*, i.e. the instance recently proved
 *   its watch had applied everything the bucket held (instance-sync.ts renews it). When the
 *   watch stalls or NATS is unreachable the lease runs out and every lookup reads through.
 * - A barrier: a change of a device list returns only after every live instance applied it
 *   (or, for one that did not answer, after its lease ran out), see instance-sync.ts.
 *
 * A read-through result is kept only if no watch event arrived while it was in flight, so an
 * older read can never overwrite a newer list the watch delivered meanwhile.
 */
import type { ParsedDeviceList } from "./device-list-rules.js";
import type { StoredDeviceList } from "./device-list-store.js";

interface Entry {
  current: ParsedDeviceList;
  revision: number;
}

/** Accounts kept (least recently used dropped beyond this): ~1-2 KiB each. */
export const DEFAULT_MAX_ACCOUNTS = 50_000;

export class DeviceListCache {
  private readonly entries = new Map<string, Entry>();
  private freshUntil = 0;
  /** Counts watch events; a read that saw it change was racing one and is not kept. */
  private events = 0;

  constructor(
    private readonly read: (accountId: string) => Promise<StoredDeviceList | undefined>,
    private readonly now: () => number,
    private readonly maxAccounts = DEFAULT_MAX_ACCOUNTS,
  ) {}

  get fresh(): boolean {
    return this.now() < this.freshUntil;
  }

  /** The watch was proven current at some time t: the cache may answer until `until`. */
  renew(until: number): void {
    if (until > this.freshUntil) this.freshUntil = until;
  }

  /** Stop answering from memory at once (the watch is behind, or this instance lost NATS). */
  fence(): void {
    this.freshUntil = 0;
  }

  get size(): number {
    return this.entries.size;
  }

  async get(accountId: string): Promise<ParsedDeviceList | undefined> {
    const hit = this.peek(accountId);
    if (hit) return hit;
    const seen = this.events;
    const cur = await this.read(accountId);
    if (cur && seen === this.events && this.fresh) this.keep(accountId, { current: cur, revision: cur.revision });
    return cur;
  }

  /** The list from memory while the cache may answer, else undefined (then get() reads it). */
  peek(accountId: string): ParsedDeviceList | undefined {
    if (!this.fresh) return undefined;
    const hit = this.entries.get(accountId);
    if (!hit) return undefined;
    this.entries.delete(accountId);
    this.entries.set(accountId, hit);
    return hit.current;
  }

  /** A list change from the watch, in revision order. */
  apply(accountId: string, current: ParsedDeviceList, revision: number): void {
    this.events++;
    const e = this.entries.get(accountId);
    if (e && e.revision < revision) this.entries.set(accountId, { current, revision });
  }

  private keep(accountId: string, e: Entry): void {
    const old = this.entries.get(accountId);
    if (old && old.revision >= e.revision) return;
    this.entries.delete(accountId);
    this.entries.set(accountId, e);
    if (this.entries.size > this.maxAccounts) this.entries.delete(this.entries.keys().next().value!);
  }
}
