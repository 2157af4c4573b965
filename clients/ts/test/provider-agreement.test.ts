/** Every provider agrees with @noble on every primitive for random inputs, including rejections. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toHex } from "../src/crypto/bytes.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import type { CryptoProvider } from "../src/crypto/provider.js";
import { createWebCryptoProvider } from "../src/crypto/webcrypto-provider.js";

const noble = createNobleProvider();
const OTHERS: [string, CryptoProvider][] = [
  ["node:crypto", createNodeProvider()],
  ["WebCrypto", createWebCryptoProvider()],
];
const RUNS = process.env.SEALPOST_LONG ? 500 : 40;
const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const bytes = fc.uint8Array({ maxLength: 300 });

describe.each(OTHERS)("provider agreement (noble vs %s)", (_name, node) => {
  it("X25519 public keys and shared secrets", async () => {
    await fc.assert(
      fc.asyncProperty(key32, key32, async (a, b) => {
        const pub = await noble.x25519PublicKey(b);
        expect(toHex(await node.x25519PublicKey(b))).toBe(toHex(pub));
        expect(toHex(await node.x25519(a, pub))).toBe(toHex(await noble.x25519(a, pub)));
      }),
      { numRuns: RUNS },
    );
  });

  it("X25519 with arbitrary 32-byte public values: same result or both refuse", async () => {
    await fc.assert(
      fc.asyncProperty(key32, key32, async (a, u) => {
        const run = async (f: () => Promise<Uint8Array>) => {
          try {
            return toHex(await f());
          } catch (e) {
            return (e as Error).name;
          }
        };
        expect(await run(() => node.x25519(a, u))).toBe(await run(() => noble.x25519(a, u)));
      }),
      { numRuns: RUNS },
    );
  });

  it("Ed25519 keys, signatures and verification (also of mutated signatures)", async () => {
    await fc.assert(
      fc.asyncProperty(key32, bytes, fc.nat(63), async (seed, msg, flip) => {
        const pub = await noble.ed25519PublicKey(seed);
        expect(toHex(await node.ed25519PublicKey(seed))).toBe(toHex(pub));
        const sig = await noble.ed25519Sign(seed, msg);
        expect(toHex(await node.ed25519Sign(seed, msg))).toBe(toHex(sig));
        expect(await node.ed25519Verify(pub, msg, sig)).toBe(true);
        const bad = sig.slice();
        bad[flip] ^= 0x01;
        expect(await node.ed25519Verify(pub, msg, bad)).toBe(false);
        expect(await noble.ed25519Verify(pub, msg, bad)).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });

  it("hashes, HMAC and HKDF", async () => {
    await fc.assert(
      fc.asyncProperty(bytes, bytes, bytes, fc.integer({ min: 1, max: 255 }), async (ikm, salt, info, len) => {
        expect(toHex(node.sha256(ikm))).toBe(toHex(noble.sha256(ikm)));
        expect(toHex(await node.sha256Async(ikm))).toBe(toHex(noble.sha256(ikm)));
        expect(toHex(await noble.sha256Async(ikm))).toBe(toHex(noble.sha256(ikm)));
        expect(toHex(node.sha512(ikm))).toBe(toHex(noble.sha512(ikm)));
        expect(toHex(await node.hmacSha256(salt, info))).toBe(toHex(await noble.hmacSha256(salt, info)));
        expect(toHex(await node.hkdf(ikm, salt, info, len))).toBe(toHex(await noble.hkdf(ikm, salt, info, len)));
      }),
      { numRuns: RUNS },
    );
  });

  it("AES-256-GCM seal/open, and both reject any tampering", async () => {
    await fc.assert(
      fc.asyncProperty(key32, fc.uint8Array({ minLength: 12, maxLength: 12 }), bytes, bytes, fc.nat(), async (key, nonce, pt, aad, where) => {
        const sealed = await noble.aesGcmSeal(key, nonce, pt, aad);
        expect(toHex(await node.aesGcmSeal(key, nonce, pt, aad))).toBe(toHex(sealed));
        expect(toHex((await node.aesGcmOpen(key, nonce, sealed, aad))!)).toBe(toHex(pt));
        const bad = sealed.slice();
        bad[where % bad.length] ^= 0x04;
        expect(await node.aesGcmOpen(key, nonce, bad, aad)).toBeUndefined();
        expect(await noble.aesGcmOpen(key, nonce, bad, aad)).toBeUndefined();
      }),
      { numRuns: RUNS },
    );
  });

  it("ML-KEM-768 keygen, encapsulation and (implicit-rejection) decapsulation", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 64, maxLength: 64 }), key32, fc.nat(1087), async (seed, m, flip) => {
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
