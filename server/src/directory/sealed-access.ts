/**
 * Who may send an account sealed mail (SetSealedAccess sets it, SendSealed checks it): per
 * device of the account a mode and the SHA-256 of that device's access key, kept in
 * sp_sealed_access as one JSON record per account (replaced with revision CAS, so two
 * devices setting theirs at once both land). The server never holds an access key itself.
 *
 * Checked from memory: each instance keeps the records it used, replaced by its KV watch as
 * they change, so a sealed Send costs no store read. A change reaches an instance as fast as
 * its watch (milliseconds); unlike a revocation there is no barrier: access keys are abuse
 * control, and the sender still has to be someone the recipient device authenticates.
 */
import { timingSafeEqual, createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { SealedAccessMode } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { isWrongSequence } from "./device-list-store.js";

export interface DeviceAccess {
  mode: SealedAccessMode;
  /** SHA-256 of the device's access key (CONTACTS). */
  keySha256?: Uint8Array;
}

/** An account's settings by device id. */
export type AccountAccess = ReadonlyMap<number, DeviceAccess>;

const NONE: AccountAccess = new Map();
/** Accounts kept in memory (least recently used dropped beyond this): ~100 bytes per device. */
export const DEFAULT_MAX_ACCOUNTS = 100_000;
const MAX_CAS_TRIES = 16;

export class SealedAccess {
  private readonly cache = new Map<string, AccountAccess>();

  constructor(
    private readonly kv: KV,
    private readonly maxAccounts = DEFAULT_MAX_ACCOUNTS,
  ) {}

  /** A record as the watch saw it (an empty value: deleted). The watch always wins over a read. */
  apply(accountId: string, value: Uint8Array): void {
    this.remember(accountId, decode(value));
  }

  async get(accountId: string): Promise<AccountAccess> {
    const hit = this.cache.get(accountId);
    if (hit) {
      this.cache.delete(accountId); // most recently used last
      this.cache.set(accountId, hit);
      return hit;
    }
    const e = await this.kv.get(accountId);
    const read = e?.operation === "PUT" ? decode(e.value) : NONE;
    // A watch event that arrived during the read is newer than what the read returned.
    const raced = this.cache.get(accountId);
    if (raced) return raced;
    this.remember(accountId, read);
    return read;
  }

  /** Sets one device's setting (the other devices' stay). */
  async set(accountId: string, deviceId: number, access: DeviceAccess): Promise<void> {
    for (let i = 0; i < MAX_CAS_TRIES; i++) {
      const e = await this.kv.get(accountId);
      const next = new Map(e?.operation === "PUT" ? decode(e.value) : NONE);
      next.set(deviceId, access);
      const bytes = encode(next);
      try {
        if (e) await this.kv.update(accountId, bytes, e.revision);
        else await this.kv.create(accountId, bytes);
        this.remember(accountId, next);
        return;
      } catch (err) {
        if (!isWrongSequence(err)) throw err;
      }
    }
    throw new Error(`sealed access of ${accountId}: too many concurrent changes`);
  }

  private remember(accountId: string, access: AccountAccess): void {
    this.cache.delete(accountId);
    this.cache.set(accountId, access);
    if (this.cache.size > this.maxAccounts) this.cache.delete(this.cache.keys().next().value!);
  }
}

/**
 * Whether a sealed Send with `accessKey` may go to the account: some current device allows
 * anyone, or allows contacts and the key's SHA-256 is its verifier (compared in constant time).
 */
export function sealedSendAllowed(access: AccountAccess, currentDeviceIds: readonly number[], accessKey: Uint8Array): boolean {
  const digest = accessKey.length ? createHash("sha256").update(accessKey).digest() : undefined;
  let allowed = false;
  for (const id of currentDeviceIds) {
    const a = access.get(id);
    if (!a) continue;
    if (a.mode === SealedAccessMode.ANYONE) allowed = true;
    // Every listed verifier is compared, so the time taken does not depend on which one matched.
    else if (a.mode === SealedAccessMode.CONTACTS && digest && a.keySha256?.length === 32 && timingSafeEqual(digest, a.keySha256)) allowed = true;
  }
  return allowed;
}

function encode(access: AccountAccess): Uint8Array {
  const o: Record<string, { mode: number; key?: string }> = {};
  for (const [id, a] of access) o[id] = a.keySha256 ? { mode: a.mode, key: Buffer.from(a.keySha256).toString("hex") } : { mode: a.mode };
  return new TextEncoder().encode(JSON.stringify(o));
}

function decode(value: Uint8Array): AccountAccess {
  if (!value.length) return NONE;
  const o = JSON.parse(new TextDecoder().decode(value)) as Record<string, { mode: number; key?: string }>;
  const m = new Map<number, DeviceAccess>();
  for (const [id, a] of Object.entries(o)) m.set(Number(id), a.key ? { mode: a.mode, keySha256: Buffer.from(a.key, "hex") } : { mode: a.mode });
  return m;
}
