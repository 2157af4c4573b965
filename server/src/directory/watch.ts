/**
 * The instance-wide view of directory changes: one KV watch on sp_accounts and one on
 * sp_prekeys per server instance (updates only), fanned out in memory to every WatchDirectory
 * stream and listener of this instance. One consumer pair per instance instead of one per
 * stream: 2.9.10 allows one filter subject per consumer, so a per-stream watch of 256
 * accounts would need 256 consumers.
 */
import { KvWatchInclude, type KV, type KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "../logger.js";
import { decodeStored } from "./device-list-store.js";
import type { ParsedDeviceList } from "./device-list-rules.js";

export type DirectoryEvent =
  | { kind: "list"; accountId: string; current: ParsedDeviceList }
  | { kind: "prekeys"; accountId: string; deviceId: number };

type Listener = (e: DirectoryEvent) => void;

export class DirectoryHub {
  private readonly byAccount = new Map<string, Set<Listener>>();
  private readonly global = new Set<Listener>();
  private readonly stops: (() => void)[] = [];

  constructor(private readonly log: Logger) {}

  async start(accounts: KV, prekeys: KV): Promise<void> {
    await this.follow(accounts, (e) => {
      if (e.operation !== "PUT" || e.value.length === 0) return;
      this.emit({ kind: "list", accountId: e.key, current: decodeStored(e.value) });
    });
    await this.follow(prekeys, (e) => {
      if (e.operation !== "PUT") return;
      const dot = e.key.lastIndexOf(".");
      this.emit({ kind: "prekeys", accountId: e.key.slice(0, dot), deviceId: Number(e.key.slice(dot + 1)) });
    });
  }

  private async follow(kv: KV, on: (e: KvWatchEntry) => void): Promise<void> {
    const iter = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
    this.stops.push(() => iter.stop());
    void (async () => {
      for await (const e of iter) {
        try {
          on(e);
        } catch (err) {
          this.log.warn("directory watch: skipped an undecodable entry", { error: String(err) });
        }
      }
    })().catch((err) => this.log.warn("directory watch ended", { error: String(err) }));
  }

  private emit(e: DirectoryEvent): void {
    for (const l of this.byAccount.get(e.accountId) ?? []) l(e);
    for (const l of this.global) l(e);
  }

  /** Events for the given accounts; returns the unsubscribe function. */
  subscribe(accountIds: Iterable<string>, listener: Listener): () => void {
    const ids = [...accountIds];
    for (const id of ids) {
      let set = this.byAccount.get(id);
      if (!set) this.byAccount.set(id, (set = new Set()));
      set.add(listener);
    }
    return () => {
      for (const id of ids) {
        const set = this.byAccount.get(id);
        set?.delete(listener);
        if (set?.size === 0) this.byAccount.delete(id);
      }
    };
  }

  /** Every event of every account. */
  subscribeAll(listener: Listener): () => void {
    this.global.add(listener);
    return () => this.global.delete(listener);
  }

  close(): void {
    for (const stop of this.stops.splice(0)) stop();
  }
}
