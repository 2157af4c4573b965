/**
 * Bearer tokens: "v1.<account>.<device>.<expiresAtMs>.<mac>", mac = HMAC-SHA256 over the
 * part before it with a secret shared by every instance. Stateless to verify; revocation is
 * checked separately against the device list (see authenticator.ts), so it works at once.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export interface TokenClaims {
  accountId: string;
  deviceId: number;
  expiresAtMs: number;
}

export type TokenProblem = "malformed" | "bad-signature" | "expired";

export class TokenSigner {
  readonly #secret: Buffer;

  constructor(
    secret: Uint8Array,
    private readonly now: () => number = Date.now,
  ) {
    if (secret.length < 32) throw new Error("token secret must be at least 32 bytes");
    this.#secret = Buffer.from(secret);
  }

  issue(accountId: string, deviceId: number, ttlMs: number): { token: string; expiresAtMs: number } {
    const expiresAtMs = this.now() + ttlMs;
    const body = `v1.${accountId}.${deviceId}.${expiresAtMs}`;
    return { token: `${body}.${this.#mac(body)}`, expiresAtMs };
  }

  verify(token: string): TokenClaims | TokenProblem {
    if (token.length > 512) return "malformed";
    const parts = token.split(".");
    if (parts.length !== 5 || parts[0] !== "v1") return "malformed";
    const [, accountId, deviceStr, expStr, mac] = parts;
    const deviceId = Number(deviceStr);
    const expiresAtMs = Number(expStr);
    if (!/^[a-z0-9][a-z0-9_-]{2,63}$/.test(accountId) || !Number.isInteger(deviceId) || deviceId < 1 || !Number.isInteger(expiresAtMs)) {
      return "malformed";
    }
    const expected = Buffer.from(this.#mac(parts.slice(0, 4).join(".")));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "bad-signature";
    if (expiresAtMs <= this.now()) return "expired";
    return { accountId, deviceId, expiresAtMs };
  }

  /** A key for another purpose derived from the shared secret (HMAC(secret, label)); the secret itself never leaves. */
  subkey(label: string): Uint8Array {
    return createHmac("sha256", this.#secret).update(`subkey:${label}`).digest();
  }

  #mac(body: string): string {
    return createHmac("sha256", this.#secret).update(body).digest("base64url");
  }
}
