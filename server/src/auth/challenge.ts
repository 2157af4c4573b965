/**
 * Single-use authentication challenges in sp_challenges (bucket max_age 5 minutes):
 * key <account>.<device>.<nonce hex> -> u64be expiry. A challenge is consumed by a delete with
 * revision CAS, so of two Authenticate calls racing with one nonce (through any instances),
 * exactly one gets a token. A failed signature check does not consume it.
 */
import type { KV } from "@nats-io/kv";

export interface Challenge {
  nonce: Uint8Array;
  expiresAtMs: number;
}

export type ChallengeLookup = { ok: true; revision: number } | { ok: false; reason: "unknown" | "expired" };

export class ChallengeStore {
  constructor(
    private readonly kv: KV,
    private readonly now: () => number,
    private readonly random: (n: number) => Uint8Array,
    private readonly ttlMs: number,
  ) {}

  async issue(accountId: string, deviceId: number): Promise<Challenge> {
    const nonce = this.random(32);
    const expiresAtMs = this.now() + this.ttlMs;
    const value = Buffer.alloc(8);
    value.writeBigUInt64BE(BigInt(expiresAtMs));
    await this.kv.create(key(accountId, deviceId, nonce), value);
    return { nonce, expiresAtMs };
  }

  async find(accountId: string, deviceId: number, nonce: Uint8Array): Promise<ChallengeLookup> {
    const e = await this.kv.get(key(accountId, deviceId, nonce));
    if (!e || e.operation !== "PUT" || e.value.length !== 8) return { ok: false, reason: "unknown" };
    const expiresAtMs = Number(Buffer.from(e.value).readBigUInt64BE());
    if (expiresAtMs <= this.now()) return { ok: false, reason: "expired" };
    return { ok: true, revision: e.revision };
  }

  /** Consumes a challenge found at `revision`; false when another call consumed it first. */
  async consume(accountId: string, deviceId: number, nonce: Uint8Array, revision: number): Promise<boolean> {
    try {
      await this.kv.delete(key(accountId, deviceId, nonce), { previousSeq: revision });
      return true;
    } catch (err) {
      if (/wrong last sequence/i.test(String((err as Error)?.message ?? err))) return false;
      throw err;
    }
  }
}

const key = (accountId: string, deviceId: number, nonce: Uint8Array) => `${accountId}.${deviceId}.${Buffer.from(nonce).toString("hex")}`;
