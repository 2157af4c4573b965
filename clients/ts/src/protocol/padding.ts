/**
 * Plaintext padding to size buckets, so receipts and typing indicators look like short text
 * to anyone who sees ciphertext lengths. The plaintext, one 0x80 byte, then zero bytes
 * (ISO/IEC 7816-4 style) up to the bucket size:
 *
 *   L = len(plaintext) + 1
 *   bucket(L) = 256                                     when L <= 256
 *             = Padme(L)                                otherwise
 *   Padme(L): E = floor(log2 L), S = floor(log2 E) + 1, z = E - S,
 *             round L up to a multiple of 2^z
 *
 * Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication
 * with PURBs", PETS 2019) leaks O(log log L) bits of the length at most 12% overhead, where
 * powers of two would cost up to 100%. docs/PROTOCOL.md, "Padding".
 */
import { InvalidMessageError } from "../crypto/errors.js";
import { transientBytes } from "../util/transient-bytes.js";

export const MIN_BUCKET = 256;

/** Padmé: the smallest allowed length >= l (l >= 2). */
export function padme(l: number): number {
  const e = Math.floor(Math.log2(l));
  const s = Math.floor(Math.log2(e)) + 1;
  const z = e - s;
  const mask = 2 ** z;
  return Math.ceil(l / mask) * mask;
}

/** The padded size for a plaintext of `length` bytes. */
export function paddedLength(length: number): number {
  const needed = length + 1;
  return needed <= MIN_BUCKET ? MIN_BUCKET : padme(needed);
}

/** The padded plaintext (transient, as paddedBuffer). */
export function pad(plaintext: Uint8Array): Uint8Array {
  const out = paddedBuffer(plaintext.length);
  out.set(plaintext, 0);
  return out;
}

/**
 * A padded buffer for a plaintext of `length` bytes, padding in place: the caller writes the
 * plaintext into bytes [0, length) (an encoder writing its output there directly saves the
 * copy and the allocation pad() makes). Transient (util/transient-bytes.ts): seal it and
 * wipe it; never keep it.
 */
export function paddedBuffer(length: number): Uint8Array {
  const out = transientBytes(paddedLength(length));
  out[length] = 0x80;
  return out;
}

/** Removes the padding; throws InvalidMessageError when it is malformed. Returns a view. */
export function unpad(padded: Uint8Array): Uint8Array {
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) throw new InvalidMessageError("bad padding");
  return padded.subarray(0, i);
}
