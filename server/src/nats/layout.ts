/**
 * Every JetStream stream and KV bucket sealpost uses, created or updated idempotently at
 * start-up, so any number of instances can start against one NATS cluster in any order.
 *
 * Layout (see docs/ARCHITECTURE.md for the reasoning and the capacity arithmetic):
 * - mailboxes: K streams SP_MAILBOX_<p>, subjects sp.mbox.<p>.<account>.<device>; a device's
 *   partition p is a stable hash of its address. The stream sequence is the device's cursor.
 *   No consumers: readers catch up by single-message gets (stream-reads.ts) and learn of
 *   new mail from core-NATS notifications on sp.notify.<account>.<device>.
 * - bodies: SP_BODIES, subjects sp.body.<key>: a Send's shared ciphertext stored once.
 * - attachments: SP_ATTACHMENTS, subjects sp.att.<id>.<index> (one chunk each), metadata in
 *   the attachments bucket; receivers: the newest Receive stream per device (takeover order).
 * - directory: KV buckets for accounts (current signed device list), device-list history,
 *   prekeys, one-time prekeys, used auth challenges; config (shared token secret, mailbox
 *   partition count K); sends (idempotency records); instances (live server instances, for
 *   the device-list barrier); sealed access (who may send an account sealed mail, per device).
 */
import { ConfigError, MAX_MAILBOX_PARTITIONS, NEW_DEPLOYMENT_PARTITIONS } from "../config.js";
import { leaderReadsFor } from "./stream-reads.js";
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { Kvm, KV, KvOptions } from "@nats-io/kv";
import { createHash } from "node:crypto";

const DAY_MS = 24 * 60 * 60 * 1000;
const nanos = (ms: number) => ms * 1_000_000;

export const MAILBOX_RETENTION_MS = 30 * DAY_MS;

export const bucketNames = {
  accounts: "sp_accounts",
  deviceListHistory: "sp_device_list_history",
  prekeys: "sp_prekeys",
  oneTimePrekeys: "sp_one_time_prekeys",
  challenges: "sp_challenges",
  config: "sp_config",
  sends: "sp_sends",
  attachments: "sp_attachments",
  receivers: "sp_receivers",
  instances: "sp_instances",
  sealedAccess: "sp_sealed_access",
} as const;

export type BucketName = keyof typeof bucketNames;

export interface Layout {
  partitions: number;
  replicas: number;
  buckets: Record<BucketName, KV>;
}

export const mailboxStreamName = (partition: number) => `SP_MAILBOX_${partition}`;
export const BODY_STREAM = "SP_BODIES";
export const bodySubject = (key: string) => `sp.body.${key}`;
export const ATTACHMENT_STREAM = "SP_ATTACHMENTS";
export const KT_STREAM = "SP_KT";
export const KT_SUBJECT = "sp.kt.leaf";
export const attachmentChunkSubject = (id: string, index: number) => `sp.att.${id}.${index}`;

/** Stable partition of a device: first 4 bytes of SHA-256("account/device") mod K. */
export function mailboxPartition(accountId: string, deviceId: number, partitions: number): number {
  const h = createHash("sha256").update(`${accountId}/${deviceId}`).digest();
  return h.readUInt32BE(0) % partitions;
}

export function mailboxSubject(accountId: string, deviceId: number, partitions: number): string {
  return `sp.mbox.${mailboxPartition(accountId, deviceId, partitions)}.${accountId}.${deviceId}`;
}

/** Core-NATS subject announcing new mail (a hint; the stream is the truth). */
export const notifySubject = (accountId: string, deviceId: number) => `sp.notify.${accountId}.${deviceId}`;

function bucketOptions(name: BucketName, replicas: number): Partial<KvOptions> {
  const base: Partial<KvOptions> = { replicas, storage: StorageType.File, history: 1 };
  switch (name) {
    case "challenges":
      return { ...base, ttl: 5 * 60 * 1000 };
    case "sends":
      return { ...base, ttl: DAY_MS };
    case "attachments":
      return { ...base, ttl: MAILBOX_RETENTION_MS };
    case "receivers":
      // Only the revision order matters (newest Receive stream wins); entries may expire.
      return { ...base, ttl: DAY_MS };
    case "instances":
      // Live server instances (directory/instance-sync.ts): each renews its key every 750 ms;
      // a crashed one is forgotten after this (until then changes wait out its lease).
      return { ...base, ttl: 10_000 };
    case "deviceListHistory":
      return { ...base, history: 1 };
    default:
      return base;
  }
}

function streamConfigs(partitions: number, replicas: number): Partial<StreamConfig>[] {
  const mailboxes = Array.from({ length: partitions }, (_, p) => ({
    name: mailboxStreamName(p),
    subjects: [`sp.mbox.${p}.*.*`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(MAILBOX_RETENTION_MS),
    duplicate_window: nanos(2 * 60 * 1000),
    discard: DiscardPolicy.Old,
    allow_direct: true,
    num_replicas: replicas,
  }));
  return [
    ...mailboxes,
    {
      name: BODY_STREAM,
      subjects: ["sp.body.*"],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: nanos(MAILBOX_RETENTION_MS),
      duplicate_window: nanos(2 * 60 * 1000),
      max_msgs_per_subject: 1,
      allow_direct: true,
      num_replicas: replicas,
    },
    {
      // The key transparency log (transparency/transparency-log.ts): one message per leaf,
      // kept forever, never deleted or purged.
      name: KT_STREAM,
      subjects: [KT_SUBJECT],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      duplicate_window: nanos(2 * 60 * 1000),
      deny_delete: true,
      deny_purge: true,
      num_replicas: replicas,
    },
    {
      // Attachment chunks, sp.att.<id>.<index>; a retried chunk replaces the previous copy.
      name: ATTACHMENT_STREAM,
      subjects: ["sp.att.*.*"],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: nanos(MAILBOX_RETENTION_MS),
      duplicate_window: nanos(2 * 60 * 1000),
      max_msgs_per_subject: 1,
      allow_direct: true,
      num_replicas: replicas,
    },
  ];
}

/** Creates missing streams, updates changed ones; safe to run concurrently from many instances. */
export async function ensureStreams(jsm: JetStreamManager, configs: Partial<StreamConfig>[]): Promise<void> {
  for (const cfg of configs) {
    try {
      const info = await jsm.streams.info(cfg.name!);
      const current = info.config as unknown as Record<string, unknown>;
      const changed = Object.entries(cfg).some(([k, v]) => JSON.stringify(current[k]) !== JSON.stringify(v));
      if (changed) await jsm.streams.update(cfg.name!, { ...info.config, ...cfg } as StreamConfig);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await jsm.streams.add(cfg as StreamConfig);
      } catch (addErr) {
        // Another instance created it between our info and add: fine. nats-server 2.9 may say
        // "subjects overlap with an existing stream" for that race too; it is the race only if
        // the stream exists now (otherwise another stream owns the subjects: a real error).
        if (!CONCURRENT_CREATE.test(String(addErr))) throw addErr;
        await jsm.streams.info(cfg.name!).catch(() => {
          throw addErr;
        });
      }
    }
  }
}

/** What nats-server answers the loser of two concurrent creates of one stream (2.9 may say "subjects overlap"). */
const CONCURRENT_CREATE = /already in use|already exists|subjects overlap/i;

/**
 * kvm.create, safe when several instances start at once: it checks for the bucket's stream
 * and adds it, so the loser of a race gets the answer above although the bucket it wants now
 * exists. Then one more create binds to it; if the bucket still is not there (another
 * stream really owns the subjects), that create fails with the real error.
 */
export async function createBucket(kvm: Kvm, name: string, opts: Partial<KvOptions>): Promise<KV> {
  try {
    return await kvm.create(name, opts);
  } catch (err) {
    if (!CONCURRENT_CREATE.test(String(err))) throw err;
    return kvm.create(name, opts);
  }
}

function isNotFound(err: unknown): boolean {
  return /not found/i.test(String((err as Error)?.message ?? err));
}

/**
 * @param requested the mailbox partition count this instance is configured with; 0 takes
 *   the deployment's (NEW_DEPLOYMENT_PARTITIONS when this is the first instance).
 */
export async function ensureLayout(jsm: JetStreamManager, kvm: Kvm, requested: number, replicas: number): Promise<Layout> {
  const buckets = {} as Record<BucketName, KV>;
  for (const name of Object.keys(bucketNames) as BucketName[]) {
    // Replicated buckets are read from their leader: a revoked device, a claimed device or a
    // stored Send outcome must be visible to the next read on any instance (stream-reads.ts).
    buckets[name] = leaderReadsFor(await createBucket(kvm, bucketNames[name], bucketOptions(name, replicas)), replicas > 1);
  }
  // Before any stream: an instance with another K must not even create its partitions.
  const partitions = await agreeOnPartitions(buckets.config, requested);
  await ensureStreams(jsm, streamConfigs(partitions, replicas));
  return { partitions, replicas, buckets };
}

const PARTITIONS_KEY = "mailbox-partitions";

/**
 * The mailbox partition count K is fixed per deployment: instances that disagree hash devices
 * onto different streams, so one writes mail where another never reads it. The first instance
 * stores K in sp_config (kv.create: concurrent first starts agree on one value); every later
 * start that names a count compares and refuses to run on a mismatch, one that names none
 * (`requested` 0) takes the stored count. Returns the deployment's K.
 */
export async function agreeOnPartitions(config: KV, requested: number): Promise<number> {
  // Read first: every start after the first would otherwise propose a create that fails,
  // and failed proposals are what older nats-server replicas count inconsistently.
  let e = await config.get(PARTITIONS_KEY);
  if (e?.operation !== "PUT") {
    const proposed = requested || NEW_DEPLOYMENT_PARTITIONS;
    try {
      await config.create(PARTITIONS_KEY, new TextEncoder().encode(String(proposed)));
      return proposed;
    } catch (err) {
      if (!/wrong last sequence/i.test(String((err as Error)?.message ?? err))) throw err;
    }
    e = await config.get(PARTITIONS_KEY);
  }
  const stored = e && e.operation === "PUT" ? new TextDecoder().decode(e.value) : "(missing)";
  const count = Number(stored);
  if (!Number.isInteger(count) || count < 1 || count > MAX_MAILBOX_PARTITIONS) {
    throw new ConfigError(`the deployment's mailbox partition count in NATS (sp_config "${PARTITIONS_KEY}") is unreadable: ${JSON.stringify(stored)}`);
  }
  if (requested && count !== requested) {
    throw new ConfigError(
      `mailbox partition count mismatch: this instance is configured with --mailbox-partitions ${requested}, but the deployment's NATS (sp_config "${PARTITIONS_KEY}") uses ${stored}; every instance must use the same count, fixed for the life of the deployment (leave the option unset to take the deployment's; docs/OPERATIONS.md)`,
    );
  }
  return count;
}
