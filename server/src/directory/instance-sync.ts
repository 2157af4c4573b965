/**
 * Keeps every instance's in-memory device lists (device-list-cache.ts) honest:
 *
 * - Registry and lease. Each instance puts its id into the sp_instances bucket, then, every
 *   RENEW_MS, reads the accounts bucket's last revision and waits for its own watch to have
 *   applied it; only then it renews its cache's lease to (time of the read + LEASE_MS). An
 *   instance whose watch stalls or that loses NATS stops answering from memory within
 *   LEASE_MS, on its own clock, without anyone telling it.
 * - Barrier. After committing a device-list change at revision R, the committing instance
 *   asks all instances on sp.sync.directory "applied R?"; each answers once its watch has
 *   (or after fencing its cache, when it cannot within SYNC_WAIT_MS). The change returns when
 *   every registered instance answered; if one did not, it returns only once LEASE_MS have
 *   passed since the commit, when that instance's lease (renewed from a read made before
 *   the commit at the latest) has run out.
 *
 * So after LinkDevice/RevokeDevice returns, no instance answers from a list older than the
 * change. An instance registers before its first renewal, so one that was not in the
 * registry when the committer looked renewed its lease after the commit, from a read that
 * already included R.
 */
import type { KV } from "@nats-io/kv";
import type { JetStreamManager } from "@nats-io/jetstream";
import { bucketNames } from "../nats/layout.js";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { Logger } from "../logger.js";
import type { DeviceListCache } from "./device-list-cache.js";
import type { DirectoryHub } from "./watch.js";

export const LEASE_MS = 3_000;
const RENEW_MS = 750;
const SYNC_WAIT_MS = 750;
export const SYNC_SUBJECT = "sp.sync.directory";
const INSTANCES_STREAM = `KV_${bucketNames.instances}`;
const INSTANCES_PREFIX = `$KV.${bucketNames.instances}.`;

export interface InstanceSyncDeps {
  nc: NatsConnection;
  /** sp_instances: one key per live instance (the bucket's TTL forgets dead ones). */
  instances: KV;
  jsm: JetStreamManager;
  /** sp_accounts: its last revision is what a renewal must have applied. */
  accounts: KV;
  hub: DirectoryHub;
  cache: DeviceListCache;
  instanceId: string;
  now: () => number;
  log: Logger;
}

export class InstanceSync {
  private readonly sub: Subscription;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private renewing = false;

  constructor(private readonly d: InstanceSyncDeps) {
    this.sub = d.nc.subscribe(SYNC_SUBJECT, {
      callback: (err, msg) => {
        if (err) return;
        const revision = Number(new TextDecoder().decode(msg.data));
        void this.d.hub.whenApplied("accounts", revision, SYNC_WAIT_MS).then((ok) => {
          // Cannot catch up in time: stop answering from memory, which is as good as applied.
          if (!ok) this.d.cache.fence();
          try {
            msg.respond(new TextEncoder().encode(this.d.instanceId));
          } catch {
            // Connection gone: the committer waits out our lease instead.
          }
        });
      },
    });
  }

  /** Registers this instance and renews the lease now and every RENEW_MS. */
  async start(): Promise<void> {
    await this.renew();
    this.timer = setInterval(() => void this.renew(), RENEW_MS);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.renewing || this.closed) return;
    this.renewing = true;
    try {
      await this.d.instances.put(this.d.instanceId, new TextEncoder().encode(String(this.d.now())));
      const t0 = this.d.now();
      const last = (await this.d.accounts.status()).streamInfo.state.last_seq;
      if (await this.d.hub.whenApplied("accounts", last, LEASE_MS / 2)) this.d.cache.renew(t0 + LEASE_MS);
      else this.d.log.warn("directory watch is behind the accounts bucket; device lists are read from the store until it catches up", { lastRevision: last });
    } catch {
      // NATS unreachable: the lease runs out and lookups read through (and fail UNAVAILABLE).
    } finally {
      this.renewing = false;
    }
  }

  /**
   * Returns once every live instance applied accounts revision `revision` (or can no longer
   * answer from a list older than it). `committedAt` is when the commit was acknowledged.
   */
  async barrier(revision: number, committedAt: number): Promise<void> {
    let expected: Set<string> | undefined;
    try {
      expected = await this.registered();
    } catch (err) {
      this.d.log.warn("instance registry unreadable; waiting out the cache lease", { error: String(err) });
    }
    const answered = new Set<string>();
    if (expected?.size) {
      try {
        const replies = await this.d.nc.requestMany(SYNC_SUBJECT, new TextEncoder().encode(String(revision)), {
          strategy: "count",
          maxWait: SYNC_WAIT_MS + 250,
          maxMessages: expected.size,
        });
        for await (const m of replies) answered.add(new TextDecoder().decode(m.data));
      } catch {
        // Fewer answers than instances (or none): handled below.
      }
    }
    const missing = expected ? [...expected].filter((id) => !answered.has(id)) : undefined;
    if (missing && missing.length === 0) return;
    const wait = committedAt + LEASE_MS - this.d.now();
    this.d.log.info("directory change: waiting out the cache lease of instances that did not confirm", {
      instances: missing?.length ?? "unknown",
      waitMs: Math.max(0, wait),
    });
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }

  /**
   * Ids in the registry, from one stream-info request (a KV key listing needs a consumer and
   * can stall for seconds while keys are being written).
   */
  private async registered(): Promise<Set<string>> {
    const info = await this.d.jsm.streams.info(INSTANCES_STREAM, { subjects_filter: `${INSTANCES_PREFIX}>` });
    return new Set(Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(INSTANCES_PREFIX.length)));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    try {
      this.sub.unsubscribe();
    } catch {
      // Connection already closed.
    }
    // Leave the registry so changes need not wait for us (a purge leaves no marker behind).
    await this.d.jsm.streams.purge(INSTANCES_STREAM, { filter: `${INSTANCES_PREFIX}${this.d.instanceId}` }).catch(() => {});
  }
}
