/**
 * The symmetric-ratchet step KDF_CK: HMAC-SHA256(ck, 0x01) and HMAC-SHA256(ck, 0x02) under one
 * 32-byte chain key, in plain JavaScript (FIPS 180-4 SHA-256, RFC 2104 HMAC).
 *
 * Why not the providers' HMAC: every message takes this step on both sides, and a native
 * one-shot hash costs ~1.3-1.9 us of call overhead for its two blocks (four calls for the two
 * HMACs, ~7 us on node:crypto; ~13 us on @noble/hashes' general HMAC). Both HMACs share the
 * key's padded inner and outer blocks, so one step is six SHA-256 compressions (the two key
 * states once, then one inner and one outer block per output): ~2.6 us here, synchronous.
 *
 * Constant time: only 32-bit additions, rotations and logic on the words; no table lookup or
 * branch depends on the key. The scratch words holding key-derived state are zeroed after
 * each step.
 */

/** SHA-256 round constants (FIPS 180-4, 4.2.2). */
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,
  0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d,
  0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
  0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
/** SHA-256 initial hash value (FIPS 180-4, 5.3.3). */
const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

const IPAD = 0x36363636;
const OPAD = 0x5c5c5c5c;

// Scratch: the message schedule, the two padded-key states and a working state.
const w = new Int32Array(64);
const inner = new Int32Array(8);
const outer = new Int32Array(8);
const work = new Int32Array(8);

/** One SHA-256 compression of the block in w[0..15] into `state`. */
function compress(state: Int32Array): void {
  for (let i = 16; i < 64; i++) {
    const a = w[i - 15];
    const b = w[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  let e = state[4];
  let f = state[5];
  let g = state[6];
  let h = state[7];
  for (let i = 0; i < 64; i++) {
    const t1 = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

/** `state` <- SHA-256 state after the key block (key || zeros) XOR `pad`. */
function keyState(state: Int32Array, key: Uint8Array, pad: number): void {
  for (let i = 0; i < 8; i++) w[i] = ((key[4 * i] << 24) | (key[4 * i + 1] << 16) | (key[4 * i + 2] << 8) | key[4 * i + 3]) ^ pad;
  w.fill(pad, 8, 16);
  state.set(IV);
  compress(state);
}

/** HMAC-SHA256(key, [byte]) from the key's states, as 32 new bytes. */
function hmacOfByte(byte: number): Uint8Array {
  // Inner: one block after the padded key: the byte, 0x80, zeros, bit length (64 + 1) * 8.
  work.set(inner);
  w[0] = (byte << 24) | 0x800000;
  w.fill(0, 1, 15);
  w[15] = 65 * 8;
  compress(work);
  // Outer: the inner digest, 0x80, zeros, bit length (64 + 32) * 8.
  w.set(work);
  w[8] = 0x80000000 | 0;
  w.fill(0, 9, 15);
  w[15] = 96 * 8;
  work.set(outer);
  compress(work);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    const v = work[i];
    out[4 * i] = v >>> 24;
    out[4 * i + 1] = v >>> 16;
    out[4 * i + 2] = v >>> 8;
    out[4 * i + 3] = v;
  }
  return out;
}

/** The message key HMAC-SHA256(chainKey, 0x01) and next chain key HMAC-SHA256(chainKey, 0x02). */
export function hmacChainStep(chainKey: Uint8Array): { messageKey: Uint8Array; chainKey: Uint8Array } {
  if (chainKey.length !== 32) throw new RangeError("chain key must be 32 bytes");
  keyState(inner, chainKey, IPAD);
  keyState(outer, chainKey, OPAD);
  const messageKey = hmacOfByte(0x01);
  const next = hmacOfByte(0x02);
  w.fill(0);
  inner.fill(0);
  outer.fill(0);
  work.fill(0);
  return { messageKey, chainKey: next };
}
