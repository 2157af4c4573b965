/**
 * The protocol's Ed25519 verification rule (docs/PROTOCOL.md, Notation), written apart from
 * the client SDK so the runner checks servers independently: valid iff S < L, the key is a
 * canonical encoding of a point not of small order, and the encoding of [S]B - [k]A equals R
 * (k = SHA-512(R || A || M) mod L). @noble's own verify checks the cofactored equation, which
 * the rule does not accept.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { bytesToNumberLE as le } from "@noble/curves/utils.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { concat } from "./bytes.js";

const L = ed25519.Point.Fn.ORDER;
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

export function verifyEd25519(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  const r = signature.subarray(0, 32);
  const s = le(signature.subarray(32));
  if (s >= L) return false;
  let A: InstanceType<typeof ed25519.Point>;
  try {
    A = ed25519.Point.fromBytes(publicKey, false); // canonical encodings only
  } catch {
    return false;
  }
  if (A.isSmallOrder() || !same(A.toBytes(), publicKey)) return false;
  const k = le(sha512(concat(r, publicKey, message))) % L;
  return same(ed25519.Point.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k)).toBytes(), r);
}
