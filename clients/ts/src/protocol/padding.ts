/**
 * Plaintext padding to size buckets, so receipts and typing indicators look like short text
 * to anyone who sees ciphertext lengths. ISO/IEC 7816-4 style: the plaintext, one 0x80 byte,
 * then zero bytes up to the bucket size. Buckets: 256, 512, 1024, ... 65536 bytes (powers of
 * two from 256), then multiples of 65536. docs/PROTOCOL.md, "Padding".
 */
import { InvalidMessageError } from "../crypto/errors.js";

export const MIN_BUCKET = 256;
export const LARGE_BUCKET = 65536;

/** The padded size for a plaintext of `length` bytes. */
export function paddedLength(length: number): number {
  const needed = length + 1;
  if (needed <= LARGE_BUCKET) {
    let size = MIN_BUCKET;
    while (size < needed) size *= 2;
    return size;
  }
  return Math.ceil(needed / LARGE_BUCKET) * LARGE_BUCKET;
}

export function pad(plaintext: Uint8Array): Uint8Array {
  const out = new Uint8Array(paddedLength(plaintext.length));
  out.set(plaintext, 0);
  out[plaintext.length] = 0x80;
  return out;
}

/** Removes the padding; throws InvalidMessageError when it is malformed. Returns a view. */
export function unpad(padded: Uint8Array): Uint8Array {
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) throw new InvalidMessageError("bad padding");
  return padded.subarray(0, i);
}
