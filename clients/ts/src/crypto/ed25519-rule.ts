/**
 * The protocol's one Ed25519 verification rule, applied alike by every provider and by the
 * server (docs/PROTOCOL.md, "Notation"). A signature (R, S) by key A over M is valid iff
 *
 *   1. S < L (the group order),
 *   2. A is the canonical encoding of a curve point that is not of small order, and
 *   3. the encoding of [S]B - [k]A equals R, with k = SHA-512(R || A || M) mod L
 *      (the cofactorless equation, compared as bytes, so R must be canonical too).
 *
 * Why both halves: OpenSSL checks 1 and 3 but accepts small-order keys (with A the identity,
 * R = [S]B verifies any message for anyone); @noble's strict mode rejects those keys but
 * checks the cofactored equation, which also accepts an R carrying a small-order component.
 * Either alone lets a device sign something one platform accepts and another refuses (a
 * device list, a group message), which splits what members see.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { bytesToNumberLE } from "@noble/curves/utils.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { bytesEqual, concatBytes, fromHex } from "./bytes.js";

/**
 * Encodings of the 8 points of small order (the torsion subgroup), as the canonical-encoding
 * check lets them through; the two with x = 0 and the sign bit set are not canonical.
 */
export const SMALL_ORDER_KEYS: readonly Uint8Array[] = [
  "0100000000000000000000000000000000000000000000000000000000000000",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0000000000000000000000000000000000000000000000000000000000000080",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
].map(fromHex);

/** y >= p = 2^255 - 19, on the little-endian encoding with the sign bit ignored. */
function yNotReduced(b: Uint8Array): boolean {
  if ((b[31] & 0x7f) !== 0x7f) return false;
  for (let i = 30; i >= 1; i--) if (b[i] !== 0xff) return false;
  return b[0] >= 0xed;
}

/** y = 1 or y = p - 1 (the points with x = 0), where a set sign bit is not canonical. */
function xZeroWithSign(b: Uint8Array): boolean {
  if ((b[31] & 0x80) === 0) return false;
  const one = b[0] === 1 && b.subarray(1, 31).every((x) => x === 0) && (b[31] & 0x7f) === 0;
  const minusOne = b[0] === 0xec && b.subarray(1, 31).every((x) => x === 0xff) && (b[31] & 0x7f) === 0x7f;
  return one || minusOne;
}

/**
 * Part 2 of the rule, on bytes alone: false for a non-canonical encoding or a small-order
 * point (whether the bytes are on the curve at all is left to the decoder that follows).
 */
export function isStrictEd25519Key(publicKey: Uint8Array): boolean {
  if (publicKey.length !== 32 || yNotReduced(publicKey) || xZeroWithSign(publicKey)) return false;
  return !SMALL_ORDER_KEYS.some((k) => bytesEqual(k, publicKey));
}

const L = ed25519.Point.Fn.ORDER;

/** The whole rule on @noble's curve arithmetic (the noble and WebCrypto providers). */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64 || !isStrictEd25519Key(publicKey)) return false;
  const r = signature.subarray(0, 32);
  const s = bytesToNumberLE(signature.subarray(32));
  if (s >= L) return false;
  let A: InstanceType<typeof ed25519.Point>;
  try {
    A = ed25519.Point.fromBytes(publicKey, false);
  } catch {
    return false;
  }
  const digest = sha512(concatBytes(r, publicKey, message));
  const k = bytesToNumberLE(digest) % L;
  const check = ed25519.Point.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k));
  return bytesEqual(check.toBytes(), r);
}
