/**
 * Portable provider on `@noble/*` (pure JavaScript, audited; runs in browsers).
 * ML-KEM-768 comes from `@noble/post-quantum` (./ml-kem.ts); the node provider runs our own.
 */
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { gcm } from "@noble/ciphers/aes.js";
import { sha256, sha512 } from "@noble/hashes/sha2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { randomBytes } from "@noble/hashes/utils.js";
import { verifyEd25519 } from "./ed25519-rule.js";
import { checkLength, isAllZero } from "./bytes.js";
import { InvalidKeyError } from "./errors.js";
import { mlKemDecapsulate, mlKemEncapsulate, mlKemKeygen } from "./ml-kem.js";
import type { CryptoProvider, RandomSource } from "./provider.js";
import { GCM_TAG_BYTES, KEY_BYTES } from "./provider.js";

export interface ProviderOptions {
  /** Replaces the CSPRNG (tests and vectors only). */
  random?: RandomSource;
}

/** Creates the `@noble/*` provider. */
export function createNobleProvider(options: ProviderOptions = {}): CryptoProvider {
  const random = options.random ?? ((n: number) => randomBytes(n));
  return {
    name: "noble",
    random,
    sha256: (data) => sha256(data),
    sha512: (data) => sha512(data),
    sha256Async: async (data) => sha256(data),
    hmacSha256: async (key, data) => hmac(sha256, key, data),
    hkdf: async (ikm, salt, info, length) => hkdf(sha256, ikm, salt.length === 0 ? undefined : salt, info, length),
    async aesGcmSeal(key, nonce, plaintext, aad) {
      checkLength(key, KEY_BYTES, "AES-256-GCM key");
      return gcm(key, nonce, aad).encrypt(plaintext);
    },
    async aesGcmOpen(key, nonce, sealed, aad) {
      checkLength(key, KEY_BYTES, "AES-256-GCM key");
      if (sealed.length < GCM_TAG_BYTES) return undefined;
      try {
        return gcm(key, nonce, aad).decrypt(sealed);
      } catch {
        return undefined;
      }
    },
    async x25519PublicKey(privateKey) {
      checkLength(privateKey, KEY_BYTES, "X25519 private key");
      return x25519.getPublicKey(privateKey);
    },
    async x25519(privateKey, publicKey) {
      checkLength(privateKey, KEY_BYTES, "X25519 private key");
      checkLength(publicKey, KEY_BYTES, "X25519 public key");
      let shared: Uint8Array;
      try {
        shared = x25519.getSharedSecret(privateKey, publicKey);
      } catch {
        throw new InvalidKeyError("X25519 public key is invalid or of low order");
      }
      // RFC 7748 section 6.1: reject the all-zero output of low-order points.
      if (isAllZero(shared)) throw new InvalidKeyError("X25519 public key is invalid or of low order");
      return shared;
    },
    async ed25519PublicKey(seed) {
      checkLength(seed, KEY_BYTES, "Ed25519 seed");
      return ed25519.getPublicKey(seed);
    },
    async ed25519Sign(seed, message) {
      checkLength(seed, KEY_BYTES, "Ed25519 seed");
      return ed25519.sign(message, seed);
    },
    // The protocol's rule (ed25519-rule.ts), not @noble's own verify: that one checks the
    // cofactored equation, which OpenSSL and the server do not.
    ed25519Verify: async (publicKey, message, signature) => verifyEd25519(publicKey, message, signature),
    mlKemKeygen,
    mlKemEncapsulate,
    mlKemDecapsulate,
  };
}
