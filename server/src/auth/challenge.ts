/**
 * Stateless authentication challenges. GetAuthChallenge stores nothing, so no caller can
 * exhaust or crowd out another device's challenges; the nonce carries its own proof of origin:
 *
 *   nonce (32 bytes) = random (10) || u48be expires_at_ms (6) || mac (16)
 *   mac = HMAC-SHA256(key, "sealpost.challenge.v1" || u8(len(account)) || account ||
 *                          u32be(device) || random || expiry)[0..16]
 *
 * key is derived from the token secret every instance shares, so any instance verifies a
 * nonce issued by any other. Single use: Authenticate, after the signature verifies, creates
 * "used.<hex SHA-256(nonce)>" in sp_challenges with kv.create; of two calls with one nonce
 * (through any instances) exactly one creates it. The bucket keeps markers for 5 minutes
 * (max_age) and nonces live CHALLENGE_TTL_MS (4 minutes): a marker outlives its nonce, with a
 * minute to spare for clock skew between instances and the NATS servers.
 */
import type { KV } from "@nats-io/kv";
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export const NONCE_LENGTH = 32;
const RANDOM_BYTES = 10;
const EXPIRY_BYTES = 6;
const MAC_BYTES = NONCE_LENGTH - RANDOM_BYTES - EXPIRY_BYTES;
const LABEL = Buffer.from("sealpost.challenge.v1");

export interface Challenge {
  nonce: Uint8Array;
  expiresAtMs: number;
}

export type ChallengeCheck = { ok: true } | { ok: false; reason: "unknown" | "expired" };

export class ChallengeStore {
  readonly #key: Buffer;

  constructor(
    private readonly kv: KV,
    private readonly now: () => number,
    private readonly random: (n: number) => Uint8Array,
    private readonly ttlMs: number,
    key: Uint8Array,
  ) {
    if (key.length < 32) throw new Error("challenge key must be at least 32 bytes");
    this.#key = Buffer.from(key);
  }

  /** A fresh nonce for the device; no store access. */
  issue(accountId: string, deviceId: number): Challenge {
    const expiresAtMs = this.now() + this.ttlMs;
    const nonce = Buffer.alloc(NONCE_LENGTH);
    nonce.set(this.random(RANDOM_BYTES), 0);
    nonce.writeUIntBE(expiresAtMs, RANDOM_BYTES, EXPIRY_BYTES);
    this.#mac(accountId, deviceId, nonce).copy(nonce, RANDOM_BYTES + EXPIRY_BYTES);
    return { nonce: new Uint8Array(nonce), expiresAtMs };
  }

  /** Whether this server issued the nonce for this device and it has not expired (no store access). */
  check(accountId: string, deviceId: number, nonce: Uint8Array): ChallengeCheck {
    if (nonce.length !== NONCE_LENGTH) return { ok: false, reason: "unknown" };
    const n = Buffer.from(nonce);
    const given = n.subarray(RANDOM_BYTES + EXPIRY_BYTES);
    if (!timingSafeEqual(given, this.#mac(accountId, deviceId, n))) return { ok: false, reason: "unknown" };
    if (n.readUIntBE(RANDOM_BYTES, EXPIRY_BYTES) <= this.now()) return { ok: false, reason: "expired" };
    return { ok: true };
  }

  /** Marks a checked nonce used; false when another call used it first (on any instance). */
  async consume(nonce: Uint8Array): Promise<boolean> {
    const key = `used.${createHash("sha256").update(nonce).digest("hex")}`;
    try {
      await this.kv.create(key, Uint8Array.of(1));
      return true;
    } catch (err) {
      if (/wrong last sequence/i.test(String((err as Error)?.message ?? err))) return false;
      throw err;
    }
  }

  #mac(accountId: string, deviceId: number, nonce: Buffer): Buffer {
    const account = Buffer.from(accountId);
    const device = Buffer.alloc(4);
    device.writeUInt32BE(deviceId);
    return createHmac("sha256", this.#key)
      .update(LABEL)
      .update(Uint8Array.of(account.length))
      .update(account)
      .update(device)
      .update(nonce.subarray(0, RANDOM_BYTES + EXPIRY_BYTES))
      .digest()
      .subarray(0, MAC_BYTES);
  }
}
