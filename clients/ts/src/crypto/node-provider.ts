/**
 * Fast path on `node:crypto` (OpenSSL): X25519, Ed25519, SHA-2, HMAC, HKDF and AES-256-GCM.
 * Node 20 has no ML-KEM: ours (./ml-kem-768.ts) runs on OpenSSL's SHA-3 and SHAKE.
 *
 * Raw 32-byte keys become KeyObjects through JWK (RFC 8037 OKP keys), the cheapest import
 * path Node offers, which keeps the raw-bytes interface of CryptoProvider.
 */
import * as nodeCrypto from "node:crypto";
import { checkLength, isAllZero } from "./bytes.js";
import { isStrictEd25519Key } from "./ed25519-rule.js";
import { InvalidKeyError } from "./errors.js";
import { type Keccak, createMlKem768 } from "./ml-kem-768.js";
import type { CryptoProvider } from "./provider.js";
import { GCM_TAG_BYTES, KEY_BYTES } from "./provider.js";
import type { ProviderOptions } from "./noble-provider.js";

type OkpCurve = "X25519" | "Ed25519";

function b64url(raw: Uint8Array): string {
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("base64url");
}

// Node's JWK import builds OKP private keys from `d` alone (EVP_PKEY_new_raw_private_key) and
// only type-checks `x`, so a placeholder avoids deriving the public key first. Measured here:
// ~20 us per import, against ~300 us for a PKCS#8 DER import through the OpenSSL 3 decoders.
// The provider-agreement tests would catch a Node release that started to honour `x`.
const PLACEHOLDER_X = b64url(new Uint8Array(32));

// KeyObjects are cached per Uint8Array instance (a WeakMap, so they go when the array goes):
// the ratchet uses the same key array for its public-key derivation and one or two DHs, and
// an import costs more than the DH. Protocol code never mutates a key array in place except to
// wipe it after its last use.
const x25519Private = new WeakMap<Uint8Array, nodeCrypto.KeyObject>();
const x25519Public = new WeakMap<Uint8Array, nodeCrypto.KeyObject>();
// Ed25519 too: a sender key signs every group message with one seed and every receiver
// verifies with one public key; the import (~25 us) cost as much as the signature itself.
const ed25519Private = new WeakMap<Uint8Array, nodeCrypto.KeyObject>();
const ed25519Public = new WeakMap<Uint8Array, nodeCrypto.KeyObject>();

function privateKeyObject(crv: OkpCurve, raw: Uint8Array): nodeCrypto.KeyObject {
  const cache = crv === "X25519" ? x25519Private : ed25519Private;
  let key = cache?.get(raw);
  if (!key) {
    key = nodeCrypto.createPrivateKey({ key: { kty: "OKP", crv, d: b64url(raw), x: PLACEHOLDER_X }, format: "jwk" });
    cache?.set(raw, key);
  }
  return key;
}

function publicKeyObject(crv: OkpCurve, raw: Uint8Array): nodeCrypto.KeyObject {
  const cache = crv === "X25519" ? x25519Public : ed25519Public;
  let key = cache?.get(raw);
  if (!key) {
    key = nodeCrypto.createPublicKey({ key: { kty: "OKP", crv, x: b64url(raw) }, format: "jwk" });
    cache?.set(raw, key);
  }
  return key;
}

/**
 * CSPRNG output drawn 4 KiB at a time: one randomFillSync per 4 KiB instead of one per key
 * (measured ~2.5 us per call). Served bytes are copied out and zeroed in the pool.
 */
function pooledRandom(): (n: number) => Uint8Array {
  const pool = new Uint8Array(4096);
  let offset = pool.length;
  return (n: number) => {
    if (n > pool.length) return view(nodeCrypto.randomBytes(n));
    if (offset + n > pool.length) {
      nodeCrypto.randomFillSync(pool);
      offset = 0;
    }
    const out = pool.slice(offset, offset + n);
    pool.fill(0, offset, offset + n);
    offset += n;
    return out;
  };
}

function rawPublic(key: nodeCrypto.KeyObject): Uint8Array {
  const jwk = nodeCrypto.createPublicKey(key).export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk.x as string, "base64url"));
}

function view(b: Buffer | ArrayBuffer): Uint8Array {
  return b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** FIPS 203's SHA-3 functions on OpenSSL (the ML-KEM of this provider runs on them). */
export const opensslKeccak: Keccak = {
  sha3_256: (data) => view(nodeCrypto.hash("sha3-256", data, "buffer")),
  sha3_512: (data) => view(nodeCrypto.hash("sha3-512", data, "buffer")),
  shake128: (data, outputLength) => view(nodeCrypto.createHash("shake128", { outputLength }).update(data).digest()),
  shake256: (data, outputLength) => view(nodeCrypto.createHash("shake256", { outputLength }).update(data).digest()),
};
const mlKem768 = createMlKem768(opensslKeccak);

// HMAC-SHA256 (RFC 2104) as two one-shot hashes over a reused scratch buffer for the short
// keys and inputs of the ratchet's chain steps: an Hmac object costs ~2.1 us in Node, two
// crypto.hash calls ~1.6 us. Longer keys or inputs take the Hmac object.
const HMAC_BLOCK = 64;
const HMAC_MAX_DATA = 256;
const hmacInner = Buffer.alloc(HMAC_BLOCK + HMAC_MAX_DATA);
const hmacOuter = Buffer.alloc(HMAC_BLOCK + 32);

function hmacSha256(key: Uint8Array, data: Uint8Array): Buffer {
  if (key.length > HMAC_BLOCK || data.length > HMAC_MAX_DATA) return nodeCrypto.createHmac("sha256", key).update(data).digest();
  for (let i = 0; i < key.length; i++) {
    hmacInner[i] = key[i] ^ 0x36;
    hmacOuter[i] = key[i] ^ 0x5c;
  }
  hmacInner.fill(0x36, key.length, HMAC_BLOCK);
  hmacOuter.fill(0x5c, key.length, HMAC_BLOCK);
  hmacInner.set(data, HMAC_BLOCK);
  const inner = nodeCrypto.hash("sha256", hmacInner.subarray(0, HMAC_BLOCK + data.length), "buffer");
  hmacOuter.set(inner, HMAC_BLOCK);
  const out = nodeCrypto.hash("sha256", hmacOuter, "buffer");
  // The padded keys and the inner hash are key material.
  inner.fill(0);
  hmacInner.fill(0, 0, HMAC_BLOCK + data.length);
  hmacOuter.fill(0);
  return out;
}

/** Creates the `node:crypto` provider. */
export function createNodeProvider(options: ProviderOptions = {}): CryptoProvider {
  const random = options.random ?? pooledRandom();
  return {
    name: "node",
    random,
    // crypto.hash (Node >= 20.12) hashes without a Hash object (~1.7 us against ~2.6 us for
    // a 1 KiB body); the fixed-length hashes all go through it.
    sha256: (data) => view(nodeCrypto.hash("sha256", data, "buffer")),
    sha512: (data) => view(nodeCrypto.hash("sha512", data, "buffer")),
    sha256Async: async (data) => view(nodeCrypto.hash("sha256", data, "buffer")),
    hmacSha256: async (key, data) => view(hmacSha256(key, data)),
    hkdf: async (ikm, salt, info, length) => view(nodeCrypto.hkdfSync("sha256", ikm, salt, info, length)),
    async aesGcmSeal(key, nonce, plaintext, aad) {
      checkLength(key, KEY_BYTES, "AES-256-GCM key");
      const cipher = nodeCrypto.createCipheriv("aes-256-gcm", key, nonce);
      cipher.setAAD(aad);
      const body = cipher.update(plaintext);
      const fin = cipher.final();
      // Buffer.concat fills a buffer from Node's pool exactly (no uninitialized bytes):
      // a new ArrayBuffer costs ~2.5 us in Node for anything above 64 bytes, a pool slice ~0.3.
      return view(Buffer.concat([body, fin, cipher.getAuthTag()]));
    },
    async aesGcmOpen(key, nonce, sealed, aad) {
      checkLength(key, KEY_BYTES, "AES-256-GCM key");
      if (sealed.length < GCM_TAG_BYTES) return undefined;
      const split = sealed.length - GCM_TAG_BYTES;
      const decipher = nodeCrypto.createDecipheriv("aes-256-gcm", key, nonce);
      decipher.setAAD(aad);
      decipher.setAuthTag(sealed.subarray(split));
      const body = decipher.update(sealed.subarray(0, split));
      try {
        decipher.final();
      } catch {
        body.fill(0);
        return undefined;
      }
      return view(body);
    },
    async x25519PublicKey(privateKey) {
      checkLength(privateKey, KEY_BYTES, "X25519 private key");
      return rawPublic(privateKeyObject("X25519", privateKey));
    },
    async x25519(privateKey, publicKey) {
      checkLength(privateKey, KEY_BYTES, "X25519 private key");
      checkLength(publicKey, KEY_BYTES, "X25519 public key");
      let shared: Uint8Array;
      try {
        shared = view(
          nodeCrypto.diffieHellman({
            privateKey: privateKeyObject("X25519", privateKey),
            publicKey: publicKeyObject("X25519", publicKey),
          }),
        );
      } catch {
        // OpenSSL refuses an all-zero result (RFC 7748 section 6.1).
        throw new InvalidKeyError("X25519 public key is invalid or of low order");
      }
      if (isAllZero(shared)) throw new InvalidKeyError("X25519 public key is invalid or of low order");
      return shared;
    },
    async ed25519PublicKey(seed) {
      checkLength(seed, KEY_BYTES, "Ed25519 seed");
      return rawPublic(privateKeyObject("Ed25519", seed));
    },
    async ed25519Sign(seed, message) {
      checkLength(seed, KEY_BYTES, "Ed25519 seed");
      return view(nodeCrypto.sign(null, message, privateKeyObject("Ed25519", seed)));
    },
    async ed25519Verify(publicKey, message, signature) {
      // OpenSSL applies the rule's S < L and cofactorless equation; the key check is ours
      // (OpenSSL accepts small-order keys): ed25519-rule.ts.
      if (!isStrictEd25519Key(publicKey) || signature.length !== 64) return false;
      try {
        return nodeCrypto.verify(null, message, publicKeyObject("Ed25519", publicKey), signature);
      } catch {
        return false;
      }
    },
    mlKemKeygen: mlKem768.keygen,
    mlKemEncapsulate: mlKem768.encapsulate,
    mlKemDecapsulate: mlKem768.decapsulate,
  };
}
