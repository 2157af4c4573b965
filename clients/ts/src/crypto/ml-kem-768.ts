/**
 * ML-KEM-768 (FIPS 203), written here so the hashing can be native: the Keccak functions are
 * injected (node:crypto's OpenSSL SHA-3 and SHAKE in the node provider), and the lattice
 * arithmetic is typed-array code with the twiddle factors precomputed. Pure-JS ML-KEM
 * (`@noble/post-quantum`) spent ~255 us of a session setup in Keccak and ~260 us in a
 * generic NTT; this is the same algorithm with neither cost (figures in docs/BENCHMARKS.md).
 *
 * Byte-for-byte FIPS 203: checked against the C2SP/CCTV accumulated vector
 * (kat-primitives.test.ts) and against @noble/post-quantum on random and malformed inputs
 * (ml-kem-768.test.ts). Coefficients are kept canonical in [0, q); reductions are `%` by the
 * constant q (which V8's optimizing compiler turns into a multiply), corrections are masks,
 * and compression multiplies by 1/q, so no branch depends on secret data; only the
 * rejection sampling of Â branches, on public bytes. The FIPS 203 input checks (section 7) are
 * made: an encapsulation key's coefficients must be < q, a decapsulation key must hold
 * H(ek), and lengths are exact.
 */
import { checkLength, concatBytes, toHex, wipe } from "./bytes.js";
import { InvalidKeyError } from "./errors.js";

/** The SHA-3 family as FIPS 203 uses it: H, G, J/PRF and the XOF. */
export interface Keccak {
  sha3_256(data: Uint8Array): Uint8Array;
  sha3_512(data: Uint8Array): Uint8Array;
  shake128(data: Uint8Array, outputLength: number): Uint8Array;
  shake256(data: Uint8Array, outputLength: number): Uint8Array;
}

export interface MlKem768 {
  keygen(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array };
  encapsulate(publicKey: Uint8Array, m: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(ciphertext: Uint8Array, secretKey: Uint8Array): Uint8Array;
}

const N = 256;
const Q = 3329;
const K = 3;
const ETA = 2; // eta1 = eta2 = 2 for ML-KEM-768
const DU = 10;
const DV = 4;
const POLY_BYTES = 384;
const EK_BYTES = POLY_BYTES * K + 32; // 1184
const DK_PKE_BYTES = POLY_BYTES * K; // 1152
const DK_BYTES = DK_PKE_BYTES + EK_BYTES + 64; // 2400
const CT_BYTES = 32 * (DU * K + DV); // 1088
const XOF_BLOCK = 168;

type Poly = Int32Array;

// 17 is a primitive 256th root of unity mod q. ZETAS[i] = 17^BitRev7(i), GAMMAS[i] = 17^(2 BitRev7(i) + 1).
const ZETAS = new Int32Array(128);
const GAMMAS = new Int32Array(128);
{
  const pow = (e: number): number => {
    let r = 1;
    for (let i = 0; i < e; i++) r = (r * 17) % Q;
    return r;
  };
  for (let i = 0; i < 128; i++) {
    let rev = 0;
    for (let b = 0; b < 7; b++) rev |= ((i >> b) & 1) << (6 - b);
    ZETAS[i] = pow(rev);
    GAMMAS[i] = pow(2 * rev + 1);
  }
}
const INV_128 = 3303; // 128^-1 mod q
const INV_Q = 1 / Q;

/** a - b mod q for a, b in [0, q), without a branch. */
function subQ(a: number, b: number): number {
  const d = a - b;
  return d + ((d >> 31) & Q);
}

/** a + b mod q for a, b in [0, q), without a branch. */
function addQ(a: number, b: number): number {
  const s = a + b - Q;
  return s + ((s >> 31) & Q);
}

/** FIPS 203 Algorithm 9, in place. */
function ntt(f: Poly): void {
  let i = 1;
  for (let len = 128; len >= 2; len >>= 1) {
    for (let start = 0; start < N; start += 2 * len) {
      const zeta = ZETAS[i++];
      for (let j = start; j < start + len; j++) {
        const t = (zeta * f[j + len]) % Q;
        const a = f[j];
        f[j + len] = subQ(a, t);
        f[j] = addQ(a, t);
      }
    }
  }
}

/** FIPS 203 Algorithm 10, in place. */
function nttInverse(f: Poly): void {
  let i = 127;
  for (let len = 2; len <= 128; len <<= 1) {
    for (let start = 0; start < N; start += 2 * len) {
      const zeta = ZETAS[i--];
      for (let j = start; j < start + len; j++) {
        const t = f[j];
        const u = f[j + len];
        f[j] = addQ(t, u);
        f[j + len] = (zeta * subQ(u, t)) % Q;
      }
    }
  }
  for (let j = 0; j < N; j++) f[j] = (f[j] * INV_128) % Q;
}

/** acc += a * b in the NTT domain (FIPS 203 Algorithms 11 and 12). */
function multiplyAdd(acc: Poly, a: Poly, b: Poly): void {
  for (let i = 0; i < 128; i++) {
    const a0 = a[2 * i];
    const a1 = a[2 * i + 1];
    const b0 = b[2 * i];
    const b1 = b[2 * i + 1];
    const c0 = (a0 * b0 + ((a1 * b1) % Q) * GAMMAS[i]) % Q;
    const c1 = (a0 * b1 + a1 * b0) % Q;
    acc[2 * i] = addQ(acc[2 * i], c0);
    acc[2 * i + 1] = addQ(acc[2 * i + 1], c1);
  }
}

/** FIPS 203 Algorithm 7: Â[.,.] from the XOF of rho || a || b. */
function sampleNtt(keccak: Keccak, rho: Uint8Array, a: number, b: number, out: Poly): Poly {
  const input = new Uint8Array(34);
  input.set(rho);
  input[32] = a;
  input[33] = b;
  // Three blocks give 336 candidates for 256 slots (each kept with probability q/4096, so
  // ~0.8% of entries need more); more are read from a longer output of the same XOF.
  let length = 3 * XOF_BLOCK;
  let stream = keccak.shake128(input, length);
  let j = 0;
  let pos = 0;
  while (j < N) {
    if (pos + 3 > length) {
      length += XOF_BLOCK;
      stream = keccak.shake128(input, length);
    }
    const c0 = stream[pos];
    const c1 = stream[pos + 1];
    const c2 = stream[pos + 2];
    pos += 3;
    const d1 = c0 | ((c1 & 0x0f) << 8);
    const d2 = (c1 >> 4) | (c2 << 4);
    if (d1 < Q) out[j++] = d1;
    if (d2 < Q && j < N) out[j++] = d2;
  }
  return out;
}

/** FIPS 203 Algorithm 8 for eta = 2, from PRF(seed, nonce) = SHAKE256(seed || nonce, 128). */
function sampleCbd(keccak: Keccak, seed: Uint8Array, nonce: number, out: Poly): Poly {
  const input = new Uint8Array(33);
  input.set(seed);
  input[32] = nonce;
  const bytes = keccak.shake256(input, 64 * ETA);
  input.fill(0);
  for (let i = 0; i < N / 8; i++) {
    const t = bytes[4 * i] | (bytes[4 * i + 1] << 8) | (bytes[4 * i + 2] << 16) | (bytes[4 * i + 3] << 24);
    const d = (t & 0x55555555) + ((t >>> 1) & 0x55555555);
    for (let k = 0; k < 8; k++) {
      const x = (d >>> (4 * k)) & 3;
      const y = (d >>> (4 * k + 2)) & 3;
      out[8 * i + k] = subQ(x, y);
    }
  }
  bytes.fill(0);
  return out;
}

/** ByteEncode_12 of a canonical polynomial into out at offset. */
function encode12(f: Poly, out: Uint8Array, offset: number): void {
  for (let i = 0; i < N / 2; i++) {
    const a = f[2 * i];
    const b = f[2 * i + 1];
    out[offset + 3 * i] = a & 0xff;
    out[offset + 3 * i + 1] = (a >> 8) | ((b & 0x0f) << 4);
    out[offset + 3 * i + 2] = b >> 4;
  }
}

/** ByteDecode_12; returns false when a coefficient is >= q (the FIPS 203 modulus check). */
function decode12(bytes: Uint8Array, offset: number, f: Poly): boolean {
  let bad = 0;
  for (let i = 0; i < N / 2; i++) {
    const b0 = bytes[offset + 3 * i];
    const b1 = bytes[offset + 3 * i + 1];
    const b2 = bytes[offset + 3 * i + 2];
    const a = b0 | ((b1 & 0x0f) << 8);
    const b = (b1 >> 4) | (b2 << 4);
    bad |= (Q - 1 - a) | (Q - 1 - b);
    f[2 * i] = a;
    f[2 * i + 1] = b;
  }
  return bad >= 0;
}

/**
 * Compress_d(x) = round(2^d x / q) mod 2^d, as floor((2^d x + 1664) / q) by a multiply with
 * 1/q: the true quotient is an integer or at least 1/q below one, so the small bias absorbs
 * the rounding of 1/q without ever carrying. Exported for its exhaustive test.
 */
export function mlKemCompress(x: number, d: number): number {
  return Math.floor(((x << d) + 1664) * INV_Q + 1e-7) & ((1 << d) - 1);
}

/** Decompress_d(y) = round(q y / 2^d). */
function decompress(y: number, d: number): number {
  return (y * Q + (1 << (d - 1))) >> d;
}

/** Little-endian bit packing of d-bit values (ByteEncode_d for d < 12). */
function packBits(values: Poly, d: number, out: Uint8Array, offset: number): void {
  let acc = 0;
  let bits = 0;
  let o = offset;
  for (let i = 0; i < N; i++) {
    acc |= values[i] << bits;
    bits += d;
    while (bits >= 8) {
      out[o++] = acc & 0xff;
      acc >>>= 8;
      bits -= 8;
    }
  }
}

/** ByteDecode_d for d < 12. */
function unpackBits(bytes: Uint8Array, offset: number, d: number, out: Poly): void {
  let acc = 0;
  let bits = 0;
  let o = offset;
  const mask = (1 << d) - 1;
  for (let i = 0; i < N; i++) {
    while (bits < d) {
      acc |= bytes[o++] << bits;
      bits += 8;
    }
    out[i] = acc & mask;
    acc >>>= d;
    bits -= d;
  }
}

/** Creates ML-KEM-768 over the given Keccak functions. */
export function createMlKem768(keccak: Keccak): MlKem768 {
  // Scratch polynomials, allocated once: 1 KiB typed arrays live off the V8 heap, and
  // allocating ~20 of them per operation cost a quarter of the time in GC. Every call runs to
  // completion synchronously, and the ones that held secrets are zeroed before it returns.
  const poly = (): Poly => new Int32Array(N);
  const tHat = [poly(), poly(), poly()];
  const secret = [poly(), poly(), poly()]; // ŝ or r̂
  const matrix = Array.from({ length: K * K }, poly); // Â^T of an encapsulation key
  const entry = poly(); // a decoded ŝ_i
  const noise = poly();
  const acc = poly();
  const work = poly();

  /** Â^T for K-PKE.Encrypt: transposed[i * K + j] = Â[j][i] = SampleNTT(rho || i || j). */
  function expandTransposed(rho: Uint8Array, into: Poly[]): Poly[] {
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) sampleNtt(keccak, rho, i, j, into[i * K + j]);
    return into;
  }

  // Decapsulation re-encrypts under the device's own key, and a device decapsulates every
  // session setup that used its last-resort KEM prekey with the same key: its expanded Â^T
  // (public, derived from rho) is kept for the last few keys, keyed by H(ek).
  const MAX_CACHED = 8;
  const cachedMatrices = new Map<string, Poly[]>();
  function cachedTransposed(ek: Uint8Array, hEk: Uint8Array): Poly[] {
    const id = toHex(hEk);
    let matrix = cachedMatrices.get(id);
    if (matrix) {
      cachedMatrices.delete(id);
    } else {
      if (cachedMatrices.size >= MAX_CACHED) cachedMatrices.delete(cachedMatrices.keys().next().value as string);
      matrix = expandTransposed(ek.subarray(DK_PKE_BYTES), Array.from({ length: K * K }, poly));
    }
    cachedMatrices.set(id, matrix);
    return matrix;
  }

  /** K-PKE.Encrypt (FIPS 203 Algorithm 14) with t̂ already decoded into tHat. */
  function encrypt(aT: Poly[], m: Uint8Array, r: Uint8Array): Uint8Array {
    for (let i = 0; i < K; i++) ntt(sampleCbd(keccak, r, i, secret[i]));
    const ct = new Uint8Array(CT_BYTES);
    for (let i = 0; i < K; i++) {
      acc.fill(0);
      for (let j = 0; j < K; j++) multiplyAdd(acc, aT[i * K + j], secret[j]);
      nttInverse(acc);
      sampleCbd(keccak, r, K + i, noise);
      for (let n = 0; n < N; n++) acc[n] = mlKemCompress(addQ(acc[n], noise[n]), DU);
      packBits(acc, DU, ct, 32 * DU * i);
    }
    acc.fill(0);
    for (let j = 0; j < K; j++) multiplyAdd(acc, tHat[j], secret[j]);
    nttInverse(acc);
    sampleCbd(keccak, r, 2 * K, noise);
    for (let n = 0; n < N; n++) {
      const mu = -((m[n >> 3] >> (n & 7)) & 1) & 1665; // Decompress_1
      acc[n] = mlKemCompress(addQ(addQ(acc[n], noise[n]), mu), DV);
    }
    packBits(acc, DV, ct, 32 * DU * K);
    wipe(...secret, acc, noise);
    return ct;
  }

  function decodeTHat(ek: Uint8Array): boolean {
    let ok = true;
    for (let i = 0; i < K; i++) ok = decode12(ek, POLY_BYTES * i, tHat[i]) && ok;
    return ok;
  }

  /** ML-KEM.Encaps_internal (Algorithm 17): (K, r) = G(m || H(ek)), c = K-PKE.Encrypt(ek, m, r). */
  function encapsulateDecoded(aT: Poly[], hEk: Uint8Array, m: Uint8Array) {
    const g = keccak.sha3_512(concatBytes(m, hEk));
    const sharedSecret = g.slice(0, 32);
    const ciphertext = encrypt(aT, m, g.subarray(32));
    g.fill(0);
    return { ciphertext, sharedSecret };
  }

  return {
    keygen(seed) {
      checkLength(seed, 64, "ML-KEM seed");
      const d = seed.subarray(0, 32);
      const z = seed.subarray(32);
      // K-PKE.KeyGen (Algorithm 13): (rho, sigma) = G(d || k)
      const dk3 = new Uint8Array(33);
      dk3.set(d);
      dk3[32] = K;
      const g = keccak.sha3_512(dk3);
      dk3.fill(0);
      const rho = g.subarray(0, 32);
      const sigma = g.subarray(32);
      for (let i = 0; i < K; i++) ntt(sampleCbd(keccak, sigma, i, secret[i]));
      const publicKey = new Uint8Array(EK_BYTES);
      const secretKey = new Uint8Array(DK_BYTES);
      for (let i = 0; i < K; i++) {
        ntt(sampleCbd(keccak, sigma, K + i, acc)); // ê_i
        for (let j = 0; j < K; j++) multiplyAdd(acc, sampleNtt(keccak, rho, j, i, matrix[0]), secret[j]);
        encode12(acc, publicKey, POLY_BYTES * i);
        encode12(secret[i], secretKey, POLY_BYTES * i);
      }
      publicKey.set(rho, DK_PKE_BYTES);
      g.fill(0);
      wipe(...secret, acc);
      secretKey.set(publicKey, DK_PKE_BYTES);
      secretKey.set(keccak.sha3_256(publicKey), DK_PKE_BYTES + EK_BYTES);
      secretKey.set(z, DK_PKE_BYTES + EK_BYTES + 32);
      return { publicKey, secretKey };
    },

    encapsulate(publicKey, m) {
      checkLength(publicKey, EK_BYTES, "ML-KEM-768 public key");
      checkLength(m, 32, "ML-KEM randomness");
      if (!decodeTHat(publicKey)) throw new InvalidKeyError("ML-KEM-768 public key is malformed");
      const aT = expandTransposed(publicKey.subarray(DK_PKE_BYTES), matrix);
      return encapsulateDecoded(aT, keccak.sha3_256(publicKey), m);
    },

    decapsulate(ciphertext, secretKey) {
      checkLength(ciphertext, CT_BYTES, "ML-KEM-768 ciphertext");
      checkLength(secretKey, DK_BYTES, "ML-KEM-768 secret key");
      const ek = secretKey.subarray(DK_PKE_BYTES, DK_PKE_BYTES + EK_BYTES);
      const hEk = secretKey.subarray(DK_PKE_BYTES + EK_BYTES, DK_PKE_BYTES + EK_BYTES + 32);
      const z = secretKey.subarray(DK_PKE_BYTES + EK_BYTES + 32);
      const h = keccak.sha3_256(ek);
      let diff = 0;
      for (let i = 0; i < 32; i++) diff |= h[i] ^ hEk[i];
      if (!decodeTHat(ek) || diff !== 0) throw new InvalidKeyError("ML-KEM-768 secret key is malformed");
      // K-PKE.Decrypt (Algorithm 15): w = v' - NTT^-1(ŝ^T NTT(u'))
      acc.fill(0);
      for (let i = 0; i < K; i++) {
        unpackBits(ciphertext, 32 * DU * i, DU, work);
        for (let n = 0; n < N; n++) work[n] = decompress(work[n], DU);
        ntt(work);
        decode12(secretKey, POLY_BYTES * i, entry);
        multiplyAdd(acc, entry, work);
      }
      nttInverse(acc);
      unpackBits(ciphertext, 32 * DU * K, DV, work);
      const mPrime = new Uint8Array(32);
      for (let n = 0; n < N; n++) {
        const x = subQ(decompress(work[n], DV), acc[n]);
        mPrime[n >> 3] |= mlKemCompress(x, 1) << (n & 7);
      }
      wipe(acc, entry, work);
      // Implicit rejection (Algorithm 18): re-encrypt and compare in constant time.
      const { ciphertext: again, sharedSecret } = encapsulateDecoded(cachedTransposed(ek, hEk), hEk, mPrime);
      mPrime.fill(0);
      const zc = concatBytes(z, ciphertext);
      const rejected = keccak.shake256(zc, 32);
      zc.fill(0);
      let neq = 0;
      for (let i = 0; i < CT_BYTES; i++) neq |= again[i] ^ ciphertext[i];
      const keep = ((neq - 1) >> 31) & 0xff; // 0xff when equal, 0 otherwise
      for (let i = 0; i < 32; i++) sharedSecret[i] = (sharedSecret[i] & keep) | (rejected[i] & ~keep);
      rejected.fill(0);
      return sharedSecret;
    },
  };
}
