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
import { parseAddressKey } from "../device-address.js";
import type { ParsedDeviceList } from "./device-list-rules.js";

export type DirectoryEvent =
  | { kind: "list"; accountId: string; current: ParsedDeviceList; revision: number; storedAtMs: number }
  | { kind: "prekeys"; accountId: string; deviceId: number }
  | { kind: "sealed-access"; accountId: string; value: Uint8Array };

type Listener = (e: DirectoryEvent) => void;

const MAX_RESTART_DELAY_MS = 30_000;

export class DirectoryHub {
  private readonly byAccount = new Map<string, Set<Listener>>();
  private readonly global = new Set<Listener>();
  /** Stops the current watch of each bucket (replaced on every restart). */
  private readonly stops = new Map<string, () => void>();
  private closed = false;
  /** Last revision each bucket's watch has handed to the listeners. */
  private readonly applied = new Map<string, number>();
  private readonly appliedWaiters = new Set<{ name: string; revision: number; done: (ok: boolean) => void }>();

  constructor(
    private readonly log: Logger,
    /** First delay before re-opening a watch that ended; doubles up to MAX_RESTART_DELAY_MS. */
    private readonly restartDelayMs = 250,
  ) {}

  /** Follows the directory buckets; sealedAccess (SetSealedAccess's settings) when given. */
  async start(accounts: KV, prekeys: KV, sealedAccess?: KV): Promise<void> {
    await this.follow("accounts", accounts, (e) => {
      if (e.operation !== "PUT" || e.value.length === 0) return;
      this.emit({ kind: "list", accountId: e.key, current: decodeStored(e.value), revision: e.revision, storedAtMs: e.created.getTime() });
    });
    await this.follow("prekeys", prekeys, (e) => {
      if (e.operation !== "PUT") return;
      this.emit({ kind: "prekeys", ...parseAddressKey(e.key) });
    });
    if (sealedAccess) {
      await this.follow("sealedAccess", sealedAccess, (e) => {
        this.emit({ kind: "sealed-access", accountId: e.key, value: e.operation === "PUT" ? e.value : new Uint8Array(0) });
      });
    }
  }

  /**
   * Follows a bucket for the life of the hub. A watch that ends or fails (NATS trouble) is
   * re-opened with backoff from the revision after the last one seen, so no change is lost
   * and the revocation safety net and every WatchDirectory stream keep working.
   */
  private async follow(name: string, kv: KV, on: (e: KvWatchEntry) => void): Promise<void> {
    // Updates only: everything after the bucket's current last revision.
    let last = (await kv.status()).streamInfo.state.last_seq;
    this.setApplied(name, last);
    const open = async () => {
      const iter = await kv.watch({ include: KvWatchInclude.UpdatesOnly, resumeFromRevision: last + 1 });
      this.stops.set(name, () => iter.stop());
      return iter;
    };
    let iter = await open();
    void (async () => {
      let delay = 0;
      for (;;) {
        try {
          for await (const e of iter) {
            last = e.revision;
            delay = 0;
            try {
              on(e);
            } catch (err) {
              this.log.warn("directory watch: skipped an undecodable entry", { bucket: name, error: String(err) });
            }
            this.setApplied(name, last);
          }
          if (this.closed) return;
          this.log.warn("directory watch ended; restarting", { bucket: name, lastRevision: last });
        } catch (err) {
          if (this.closed) return;
          this.log.warn("directory watch failed; restarting", { bucket: name, lastRevision: last, error: String(err) });
        }
        for (;;) {
          delay = Math.min(delay ? delay * 2 : this.restartDelayMs, MAX_RESTART_DELAY_MS);
          await new Promise((r) => setTimeout(r, delay).unref());
          if (this.closed) return;
          try {
            iter = await open();
            this.log.info("directory watch restarted", { bucket: name, fromRevision: last + 1 });
            break;
          } catch (err) {
            this.log.warn("directory watch restart failed; retrying", { bucket: name, retryInMs: delay * 2, error: String(err) });
          }
        }
        if (this.closed) iter.stop();
      }
    })();
  }

  /** The last revision of a bucket ("accounts", "prekeys") this instance has applied. */
  appliedRevision(name: string): number {
    return this.applied.get(name) ?? 0;
  }

  /** Resolves true once the bucket's watch applied `revision`, false after `timeoutMs`. */
  whenApplied(name: string, revision: number, timeoutMs: number): Promise<boolean> {
    if (this.appliedRevision(name) >= revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = {
        name,
        revision,
        done: (ok: boolean) => {
          clearTimeout(t);
          this.appliedWaiters.delete(w);
          resolve(ok);
        },
      };
      const t = setTimeout(() => w.done(false), timeoutMs);
      t.unref();
      this.appliedWaiters.add(w);
    });
  }

  private setApplied(name: string, revision: number): void {
    if (revision <= this.appliedRevision(name)) return;
    this.applied.set(name, revision);
    for (const w of this.appliedWaiters) if (w.name === name && w.revision <= revision) w.done(true);
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
    this.closed = true;
    for (const w of this.appliedWaiters) w.done(false);
    for (const stop of this.stops.values()) stop();
    this.stops.clear();
  }
}
