/**
 * Our ML-KEM-768 (src/crypto/ml-kem-768.ts) against @noble/post-quantum, on both Keccak
 * back ends (node:crypto's OpenSSL and @noble/hashes), with the FIPS 203 input checks and
 * the parts that random inputs rarely reach: the XOF read past its first three blocks and
 * every compression value. The published C2SP accumulated vector runs through the node
 * provider in kat-primitives.test.ts.
 */
import { sha3_256, sha3_512, shake128, shake256 } from "@noble/hashes/sha3.js";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { describe, expect, it } from "vitest";
import { toHex } from "../src/crypto/bytes.js";
import { createDeterministicRandom } from "../src/crypto/deterministic-random.js";
import { InvalidKeyError } from "../src/crypto/errors.js";
import { type Keccak, createMlKem768, mlKemCompress } from "../src/crypto/ml-kem-768.js";
import { opensslKeccak } from "../src/crypto/node-provider.js";

const nobleKeccak: Keccak = {
  sha3_256: (d) => sha3_256(d),
  sha3_512: (d) => sha3_512(d),
  shake128: (d, n) => shake128(d, { dkLen: n }),
  shake256: (d, n) => shake256(d, { dkLen: n }),
};
const RUNS = process.env.SEALPOST_LONG ? 2000 : 60;

describe.each([
  ["OpenSSL Keccak", opensslKeccak],
  ["@noble/hashes Keccak", nobleKeccak],
])("ML-KEM-768 on %s", (_name, keccak) => {
  const kem = createMlKem768(keccak);
  const random = createDeterministicRandom(`ml-kem-768 ${_name}`);

  it("agrees with @noble/post-quantum on keys, ciphertexts, secrets and implicit rejection", () => {
    for (let i = 0; i < RUNS; i++) {
      const seed = random(64);
      const m = random(32);
      const ours = kem.keygen(seed);
      const ref = ml_kem768.keygen(seed);
      expect(toHex(ours.publicKey)).toBe(toHex(ref.publicKey));
      expect(toHex(ours.secretKey)).toBe(toHex(ref.secretKey));
      const enc = kem.encapsulate(ours.publicKey, m);
      const refEnc = ml_kem768.encapsulate(ref.publicKey, m);
      expect(toHex(enc.ciphertext)).toBe(toHex(refEnc.cipherText));
      expect(toHex(enc.sharedSecret)).toBe(toHex(refEnc.sharedSecret));
      expect(toHex(kem.decapsulate(enc.ciphertext, ours.secretKey))).toBe(toHex(enc.sharedSecret));
      // one flipped bit, and an unrelated ciphertext: the implicit-rejection secret J(z || c)
      const flipped = enc.ciphertext.slice();
      flipped[i % flipped.length] ^= 1 << (i % 8);
      for (const bad of [flipped, random(1088)]) {
        const k = kem.decapsulate(bad, ours.secretKey);
        expect(toHex(k)).toBe(toHex(ml_kem768.decapsulate(bad, ref.secretKey)));
        expect(toHex(k)).not.toBe(toHex(enc.sharedSecret));
      }
    }
  });

  it("reads the XOF past three blocks when a matrix entry needs it, with the same bytes as the reference", () => {
    let longest = 0;
    const counting = createMlKem768({
      ...keccak,
      shake128: (d, n) => {
        longest = Math.max(longest, n);
        return keccak.shake128(d, n);
      },
    });
    let seed = random(64);
    for (let tries = 0; longest <= 504 && tries < 2000; tries++) {
      seed = random(64);
      counting.keygen(seed);
    }
    expect(longest).toBeGreaterThan(504);
    expect(toHex(counting.keygen(seed).publicKey)).toBe(toHex(ml_kem768.keygen(seed).publicKey));
  });

  it("refuses an encapsulation key with a coefficient >= q (FIPS 203 modulus check), as the reference does", () => {
    const { publicKey } = kem.keygen(random(64));
    for (const value of [3329, 4095]) {
      const bad = publicKey.slice();
      bad[3 * 100] = value & 0xff; // coefficient 200: low byte, then the low nibble of the next
      bad[3 * 100 + 1] = (bad[3 * 100 + 1] & 0xf0) | (value >> 8);
      expect(() => kem.encapsulate(bad, random(32))).toThrow(InvalidKeyError);
      expect(() => ml_kem768.encapsulate(bad, random(32))).toThrow();
    }
  });

  it("refuses a decapsulation key whose H(ek) does not match, and wrong lengths", () => {
    const { publicKey, secretKey } = kem.keygen(random(64));
    const { ciphertext, sharedSecret } = kem.encapsulate(publicKey, random(32));
    const bad = secretKey.slice();
    bad[1152 + 1184] ^= 1;
    expect(() => kem.decapsulate(ciphertext, bad)).toThrow(InvalidKeyError);
    const swappedEk = secretKey.slice();
    swappedEk[1152 + 5] ^= 1;
    expect(() => kem.decapsulate(ciphertext, swappedEk)).toThrow(InvalidKeyError);
    expect(() => kem.decapsulate(ciphertext.subarray(1), secretKey)).toThrow(InvalidKeyError);
    expect(() => kem.decapsulate(ciphertext, secretKey.subarray(1))).toThrow(InvalidKeyError);
    expect(() => kem.encapsulate(publicKey.subarray(1), random(32))).toThrow(InvalidKeyError);
    expect(() => kem.keygen(random(63))).toThrow(InvalidKeyError);
    // the key still works after the refusals (no cached state was damaged)
    expect(toHex(kem.decapsulate(ciphertext, secretKey))).toBe(toHex(sharedSecret));
  });
});

describe("ML-KEM-768 compression", () => {
  it("Compress_d(x) = round(2^d x / q) mod 2^d for every x in [0, q) and d in {1, 4, 10}", () => {
    for (const d of [1, 4, 10]) {
      for (let x = 0; x < 3329; x++) {
        // exact rational rounding, half up: floor((2^(d+1) x + q) / 2q)
        const exact = Math.floor((2 ** (d + 1) * x + 3329) / (2 * 3329)) % 2 ** d;
        expect(mlKemCompress(x, d)).toBe(exact);
      }
    }
  });
});
