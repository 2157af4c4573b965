/** The two providers agree on every primitive for random inputs, including rejections. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toHex } from "../src/crypto/bytes.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";

const noble = createNobleProvider();
const node = createNodeProvider();
const RUNS = process.env.SEALPOST_LONG ? 500 : 40;
const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const bytes = fc.uint8Array({ maxLength: 300 });

describe("provider agreement (noble vs node:crypto)", () => {
  it("X25519 public keys and shared secrets", () => {
    fc.assert(
      fc.property(key32, key32, (a, b) => {
        const pub = noble.x25519PublicKey(b);
        expect(toHex(node.x25519PublicKey(b))).toBe(toHex(pub));
        expect(toHex(node.x25519(a, pub))).toBe(toHex(noble.x25519(a, pub)));
      }),
      { numRuns: RUNS },
    );
  });

  it("X25519 with arbitrary 32-byte public values: same result or both refuse", () => {
    fc.assert(
      fc.property(key32, key32, (a, u) => {
        const run = (f: () => Uint8Array) => {
          try {
            return toHex(f());
          } catch (e) {
            return (e as Error).name;
          }
        };
        expect(run(() => node.x25519(a, u))).toBe(run(() => noble.x25519(a, u)));
      }),
      { numRuns: RUNS },
    );
  });

  it("Ed25519 keys, signatures and verification (also of mutated signatures)", () => {
    fc.assert(
      fc.property(key32, bytes, fc.nat(63), (seed, msg, flip) => {
        const pub = noble.ed25519PublicKey(seed);
        expect(toHex(node.ed25519PublicKey(seed))).toBe(toHex(pub));
        const sig = noble.ed25519Sign(seed, msg);
        expect(toHex(node.ed25519Sign(seed, msg))).toBe(toHex(sig));
        expect(node.ed25519Verify(pub, msg, sig)).toBe(true);
        const bad = sig.slice();
        bad[flip] ^= 0x01;
        expect(node.ed25519Verify(pub, msg, bad)).toBe(false);
        expect(noble.ed25519Verify(pub, msg, bad)).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });

  it("hashes, HMAC and HKDF", () => {
    fc.assert(
      fc.property(bytes, bytes, bytes, fc.integer({ min: 1, max: 255 }), (ikm, salt, info, len) => {
        expect(toHex(node.sha256(ikm))).toBe(toHex(noble.sha256(ikm)));
        expect(toHex(node.sha512(ikm))).toBe(toHex(noble.sha512(ikm)));
        expect(toHex(node.hmacSha256(salt, info))).toBe(toHex(noble.hmacSha256(salt, info)));
        expect(toHex(node.hkdf(ikm, salt, info, len))).toBe(toHex(noble.hkdf(ikm, salt, info, len)));
      }),
      { numRuns: RUNS },
    );
  });

  it("AES-256-GCM seal/open, and both reject any tampering", () => {
    fc.assert(
      fc.property(key32, fc.uint8Array({ minLength: 12, maxLength: 12 }), bytes, bytes, fc.nat(), (key, nonce, pt, aad, where) => {
        const sealed = noble.aesGcmSeal(key, nonce, pt, aad);
        expect(toHex(node.aesGcmSeal(key, nonce, pt, aad))).toBe(toHex(sealed));
        expect(toHex(node.aesGcmOpen(key, nonce, sealed, aad)!)).toBe(toHex(pt));
        const bad = sealed.slice();
        bad[where % bad.length] ^= 0x04;
        expect(node.aesGcmOpen(key, nonce, bad, aad)).toBeUndefined();
        expect(noble.aesGcmOpen(key, nonce, bad, aad)).toBeUndefined();
      }),
      { numRuns: RUNS },
    );
  });

  it("ML-KEM-768 keygen, encapsulation and (implicit-rejection) decapsulation", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), key32, fc.nat(1087), (seed, m, flip) => {
        const a = noble.mlKemKeygen(seed);
        const b = node.mlKemKeygen(seed);
        expect(toHex(b.publicKey)).toBe(toHex(a.publicKey));
        const ea = noble.mlKemEncapsulate(a.publicKey, m);
        const eb = node.mlKemEncapsulate(b.publicKey, m);
        expect(toHex(eb.ciphertext)).toBe(toHex(ea.ciphertext));
        expect(toHex(node.mlKemDecapsulate(ea.ciphertext, b.secretKey))).toBe(toHex(ea.sharedSecret));
        const bad = ea.ciphertext.slice();
        bad[flip] ^= 1;
        const ka = noble.mlKemDecapsulate(bad, a.secretKey);
        expect(toHex(node.mlKemDecapsulate(bad, b.secretKey))).toBe(toHex(ka));
        expect(toHex(ka)).not.toBe(toHex(ea.sharedSecret));
      }),
      { numRuns: process.env.SEALPOST_LONG ? 50 : 5 },
    );
  });
});
