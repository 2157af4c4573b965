/**
 * One-time X25519 prekeys in sp_one_time_prekeys, one KV entry per key:
 * <account>.<device>.<keyId> -> 32-byte public key.
 *
 * Claim = get of the device's oldest key (next_by_subj with a wildcard, works on
 * nats-server 2.9.10), then delete that exact stream message by sequence. JetStream removes a
 * message once: a second delete of the same sequence fails with "no message found", so under
 * concurrent claims from any number of instances each key is handed out exactly once. A loser
 * moves on to the next key after the one it lost (every key below it is already taken; uploads
 * always land at higher sequences). Deleting by sequence leaves no tombstone, so a device's
 * consumed keys do not pile up in the bucket (2.9.10 has no per-message TTL to expire them).
 *
 * Counting uses stream info with a subjects filter (one request, one entry per stored key).
 */
import { addressKey } from "../device-address.js";
import { Code, ConnectError } from "@connectrpc/connect";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { create } from "@bufbuild/protobuf";
import { OneTimePrekeySchema, type OneTimePrekey } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { KEY_BYTES } from "./limits.js";
import { StreamReads } from "../nats/stream-reads.js";

export function checkOneTimePrekeys(keys: OneTimePrekey[]): void {
  const seen = new Set<number>();
  keys.forEach((k, i) => {
    const at = `one_time_prekeys[${i}]`;
    if (k.keyId < 1) throw new ConnectError(`${at}.key_id must be at least 1`, Code.InvalidArgument);
    if (k.publicKey.length !== KEY_BYTES)
      throw new ConnectError(`${at}.public_key must be ${KEY_BYTES} bytes (X25519), got ${k.publicKey.length}`, Code.InvalidArgument);
    if (seen.has(k.keyId)) throw new ConnectError(`${at}.key_id ${k.keyId} appears twice in the batch`, Code.InvalidArgument);
    seen.add(k.keyId);
  });
}

export class OneTimePrekeyStore {
  private readonly stream: string;
  /** Per-device tail of this instance's claim queue. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Per-device stream sequence to resume the search from. */
  private readonly hints = new Map<string, number>();

  constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly bucket: string,
    /** Leader reads when replicated: a lagging replica would offer keys already claimed. */
    private readonly reads: StreamReads = new StreamReads(jsm, false),
  ) {
    this.stream = `KV_${bucket}`;
  }

  private subject(accountId: string, deviceId: number, keyId: number | "*"): string {
    return `$KV.${this.bucket}.${accountId}.${deviceId}.${keyId}`;
  }

  /** Key ids currently stored for a device. */
  async storedKeyIds(accountId: string, deviceId: number): Promise<Set<number>> {
    const info = await this.jsm.streams.info(this.stream, { subjects_filter: this.subject(accountId, deviceId, "*") });
    const ids = new Set<number>();
    for (const subj of Object.keys(info.state.subjects ?? {})) ids.add(Number(subj.slice(subj.lastIndexOf(".") + 1)));
    return ids;
  }

  async count(accountId: string, deviceId: number): Promise<number> {
    return (await this.storedKeyIds(accountId, deviceId)).size;
  }

  /**
   * Stores a batch whose ids are not stored yet. All or nothing: if any id was taken
   * concurrently, the keys this call wrote are removed again and ALREADY_EXISTS is thrown.
   */
  async add(accountId: string, deviceId: number, keys: OneTimePrekey[]): Promise<void> {
    const results = await Promise.allSettled(keys.map((k) => this.kv.create(`${accountId}.${deviceId}.${k.keyId}`, k.publicKey)));
    const failed = results.findIndex((r) => r.status === "rejected");
    if (failed < 0) return;
    await Promise.all(
      results.map((r) => (r.status === "fulfilled" ? this.jsm.streams.deleteMessage(this.stream, r.value, false).catch(() => false) : undefined)),
    );
    const reason = (results[failed] as PromiseRejectedResult).reason;
    if (/wrong last sequence|key exists/i.test(String(reason?.message ?? reason))) {
      throw new ConnectError(`one-time prekey id ${keys[failed].keyId} is already stored`, Code.AlreadyExists);
    }
    throw reason;
  }

  /**
   * Hands out one key exactly once, or undefined when the device has none left. Claims of one
   * device are serialized within this instance, so only claims from different instances ever
   * race for the same key (hundreds of concurrent claims would otherwise all hit the oldest
   * key at once and retry quadratically).
   */
  claim(accountId: string, deviceId: number): Promise<OneTimePrekey | undefined> {
    const k = addressKey({ accountId, deviceId });
    const prev = this.queues.get(k) ?? Promise.resolve();
    const run = prev.then(() => this.claimNow(accountId, deviceId, k));
    const tail = run.catch(() => {});
    this.queues.set(k, tail);
    void tail.then(() => {
      if (this.queues.get(k) === tail) this.queues.delete(k);
    });
    return run;
  }

  private async claimNow(accountId: string, deviceId: number, k: string): Promise<OneTimePrekey | undefined> {
    const filter = this.subject(accountId, deviceId, "*");
    // Every key below the hint is gone (claimed here or lost to another instance), and new
    // uploads land above it; it only saves re-reading them. One pass from 0 before giving up.
    const hint = this.hints.get(k) ?? 0;
    let seq = hint;
    let wrapped = hint === 0;
    for (;;) {
      const m = await this.reads.get(this.stream, { next_by_subj: filter, seq });
      if (!m) {
        if (wrapped) {
          this.hints.delete(k);
          return undefined;
        }
        wrapped = true;
        seq = 0;
        continue;
      }
      seq = m.seq + 1;
      // A KV delete/purge marker (not written by this store, but possible): not a key.
      if (m.header?.get("KV-Operation")) continue;
      try {
        await this.jsm.streams.deleteMessage(this.stream, m.seq, false);
      } catch (err) {
        if (/no message found/i.test(String((err as Error)?.message ?? err))) continue; // another instance got it
        throw err;
      }
      if (this.hints.size > 10_000) this.hints.clear();
      this.hints.set(k, seq);
      const keyId = Number(m.subject.slice(m.subject.lastIndexOf(".") + 1));
      return create(OneTimePrekeySchema, { keyId, publicKey: new Uint8Array(m.data) });
    }
  }

  /** Removes every key of a revoked device. */
  async purgeDevice(accountId: string, deviceId: number): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: this.subject(accountId, deviceId, "*") });
  }
}
