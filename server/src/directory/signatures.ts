/**
 * Ed25519 verification and SHA-256 on node:crypto, and the exact byte strings each signature
 * covers (labels and layouts from the proto comments of sealpost.directory.v1).
 */
import { createHash, createPublicKey, verify } from "node:crypto";

// DER SubjectPublicKeyInfo header of an Ed25519 key (RFC 8410); the raw 32-byte key follows.
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

const enc = new TextEncoder();
export const DEVICE_LIST_LABEL = enc.encode("sealpost.device-list.v1");
export const AUTH_LABEL = enc.encode("sealpost.auth.v1");
export const IDENTITY_LABEL = enc.encode("sealpost.identity.v1");
export const SIGNED_PREKEY_LABEL = enc.encode("sealpost.signed-prekey.v1");
export const KEM_PREKEY_LABEL = enc.encode("sealpost.kem-prekey.v1");

/**
 * Encodings of the 8 small-order points (the client's list in clients/ts/src/crypto/ed25519-rule.ts;
 * server/test/signature-vectors.test.ts checks the two agree).
 */
export const SMALL_ORDER_KEYS: readonly Buffer[] = [
  "0100000000000000000000000000000000000000000000000000000000000000",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0000000000000000000000000000000000000000000000000000000000000080",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
].map((h) => Buffer.from(h, "hex"));

const P_BYTES = Buffer.from("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "hex");

/**
 * The key half of the protocol's Ed25519 rule (docs/PROTOCOL.md, "Notation"): a canonical
 * encoding (y < p; no sign bit on x = 0) of a point not of small order. OpenSSL checks the
 * rest (S < L, the cofactorless equation) but accepts small-order keys, for which anyone can
 * make a signature that verifies.
 */
export function isStrictEd25519Key(publicKey: Uint8Array): boolean {
  if (publicKey.length !== 32) return false;
  const y = Buffer.from(publicKey);
  y[31] &= 0x7f;
  // Little-endian comparison with p, from the most significant byte.
  for (let i = 31; i >= 0; i--) {
    if (y[i] < P_BYTES[i]) break;
    if (y[i] > P_BYTES[i] || i === 0) return false;
  }
  const signed = (publicKey[31] & 0x80) !== 0;
  const xZero = y.equals(SMALL_ORDER_KEYS[0]) || y.equals(SMALL_ORDER_KEYS[1]);
  if (signed && xZero) return false;
  return !SMALL_ORDER_KEYS.some((k) => k.equals(publicKey));
}

/** False for any malformed key or signature, or one the protocol's rule refuses (never throws). */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!isStrictEd25519Key(publicKey) || signature.length !== 64) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: "der", type: "spki" });
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function u32be(n: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** "sealpost.auth.v1" || u8(len(account_id)) || account_id || u32be(device_id) || nonce */
export function authSignedBytes(accountId: string, deviceId: number, nonce: Uint8Array): Uint8Array {
  const id = enc.encode(accountId);
  return concat(AUTH_LABEL, Uint8Array.of(id.length), id, u32be(deviceId), nonce);
}

/** label || u32be(key_id) || public_key (signed X25519 and ML-KEM prekeys). */
export function prekeySignedBytes(label: Uint8Array, keyId: number, publicKey: Uint8Array): Uint8Array {
  return concat(label, u32be(keyId), publicKey);
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
