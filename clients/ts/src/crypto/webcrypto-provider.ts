/**
 * The browser provider: WebCrypto (`crypto.subtle`) for HMAC, HKDF, AES-256-GCM, X25519,
 * Ed25519 signing and SHA-256 of bodies and files, @noble for the rest. In Chromium the
 * WebCrypto primitives of a 1:1 message run ~3x faster than @noble's, a DH ratchet key ~3.6x
 * (bench/src/web-bench.ts); on Node the node:crypto provider is the fast one (Node's
 * WebCrypto runs each call on its thread pool).
 *
 * Stays with @noble, and why (each measured in the same bench):
 *  - the synchronous SHA-256 / SHA-512 (Merkle proofs, list hashes, short inputs computed
 *    inline); message bodies and files go through sha256Async, WebCrypto's digest here
 *    (~3.9x @noble's speed for a 1 KiB body in Chromium).
 *  - Ed25519 verification: ~4-6x faster through WebCrypto, but the protocol needs strict
 *    RFC 8032 rules that every implementation applies alike (canonical encodings only); a
 *    device list one engine accepts and another refuses would split an account's view, and
 *    WebCrypto leaves those edge cases to the engine.
 *  - ML-KEM-768: no browser ships it in WebCrypto yet.
 * A primitive the browser does not support (an older engine without X25519 or Ed25519) falls
 * back to @noble for the rest of the provider's life. Byte-identical to the other providers
 * on every vector (clients/ts/test/vectors.test.ts, and in Chromium clients/ts/test/browser.test.ts).
 */
import { checkLength, concatBytes, fromBase64, isAllZero, wipe } from "./bytes.js";
import { InvalidKeyError } from "./errors.js";
import { createNobleProvider, type ProviderOptions } from "./noble-provider.js";
import type { CryptoProvider } from "./provider.js";
import { GCM_TAG_BYTES, KEY_BYTES } from "./provider.js";

export interface WebCryptoProviderOptions extends ProviderOptions {
  /** The SubtleCrypto to use (default: globalThis.crypto.subtle). */
  subtle?: SubtleCrypto;
}

// PKCS#8 wrappers of a raw 32-byte private key (RFC 8410): the only raw-key import WebCrypto
// accepts for these curves (a JWK would need the public half, which is what we derive).
const X25519_PKCS8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
const ED25519_PKCS8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

const HMAC = { name: "HMAC", hash: "SHA-256" } as const;

/**
 * The bytes as a view on a plain ArrayBuffer, as WebCrypto's typings ask for: the same view
 * when it is one (WebCrypto copies what it reads when it is called, so no copy of a key or
 * plaintext is left behind here), a copy otherwise (a SharedArrayBuffer).
 */
function buf(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b.buffer instanceof ArrayBuffer ? (b as Uint8Array<ArrayBuffer>) : new Uint8Array(b);
}

/** Creates the WebCrypto provider (browsers; also runs on Node for tests). */
export function createWebCryptoProvider(options: WebCryptoProviderOptions = {}): CryptoProvider {
  const noble = createNobleProvider(options);
  const subtle = options.subtle ?? globalThis.crypto?.subtle;
  if (!subtle) throw new Error("WebCrypto is not available here (crypto.subtle exists only in secure contexts); use createNobleProvider");
  // Curves this engine lacks (NotSupportedError on first use): @noble from then on.
  const unsupported = new Set<string>();
  const supported = async <T>(curve: string, viaWebCrypto: () => Promise<T>, viaNoble: () => Promise<T>): Promise<T> => {
    if (unsupported.has(curve)) return viaNoble();
    try {
      return await viaWebCrypto();
    } catch (e) {
      if (!(e instanceof Error) || e.name !== "NotSupportedError") throw e;
      unsupported.add(curve);
      return viaNoble();
    }
  };
  const privateKey = async (curve: "X25519" | "Ed25519", raw: Uint8Array, extractable: boolean, usages: KeyUsage[]) => {
    const pkcs8 = concatBytes(curve === "X25519" ? X25519_PKCS8 : ED25519_PKCS8, raw);
    try {
      return await subtle.importKey("pkcs8", buf(pkcs8), { name: curve }, extractable, usages);
    } finally {
      // The wrapped private key is not left behind in this copy.
      wipe(pkcs8);
    }
  };
  const publicOf = async (curve: "X25519" | "Ed25519", raw: Uint8Array) => {
    const jwk = await subtle.exportKey("jwk", await privateKey(curve, raw, true, curve === "X25519" ? ["deriveBits"] : ["sign"]));
    return fromBase64(jwk.x as string);
  };

  return {
    ...noble,
    name: "webcrypto",
    async sha256Async(data) {
      return new Uint8Array(await subtle.digest("SHA-256", buf(data)));
    },
    async hmacSha256(key, data) {
      // WebCrypto refuses an empty HMAC key; RFC 2104 pads it with zeros like any short key.
      if (key.length === 0) return noble.hmacSha256(key, data);
      const k = await subtle.importKey("raw", buf(key), HMAC, false, ["sign"]);
      return new Uint8Array(await subtle.sign("HMAC", k, buf(data)));
    },
    async hkdf(ikm, salt, info, length) {
      const k = await subtle.importKey("raw", buf(ikm), "HKDF", false, ["deriveBits"]);
      return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: buf(salt), info: buf(info) }, k, length * 8));
    },
    async aesGcmSeal(key, nonce, plaintext, aad) {
      checkLength(key, KEY_BYTES, "AES-256-GCM key");
      const k = await subtle.importKey("raw", buf(key), "AES-GCM", false, ["encrypt"]);
      return new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, k, buf(plaintext)));
    },
    async aesGcmOpen(key, nonce, sealed, aad) {
      checkLength(key, KEY_BYTES, "AES-256-GCM key");
      if (sealed.length < GCM_TAG_BYTES) return undefined;
      const k = await subtle.importKey("raw", buf(key), "AES-GCM", false, ["decrypt"]);
      try {
        return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, k, buf(sealed)));
      } catch (e) {
        if (e instanceof Error && e.name === "OperationError") return undefined;
        throw e;
      }
    },
    async x25519PublicKey(priv) {
      checkLength(priv, KEY_BYTES, "X25519 private key");
      return supported(
        "X25519",
        () => publicOf("X25519", priv),
        () => noble.x25519PublicKey(priv),
      );
    },
    async x25519(priv, pub) {
      checkLength(priv, KEY_BYTES, "X25519 private key");
      checkLength(pub, KEY_BYTES, "X25519 public key");
      return supported(
        "X25519",
        async () => {
          let shared: Uint8Array;
          try {
            const peer = await subtle.importKey("raw", buf(pub), { name: "X25519" }, false, []);
            const own = await privateKey("X25519", priv, false, ["deriveBits"]);
            shared = new Uint8Array(await subtle.deriveBits({ name: "X25519", public: peer }, own, 256));
          } catch (e) {
            if (e instanceof Error && e.name === "NotSupportedError") throw e;
            // WebCrypto refuses an all-zero result (RFC 7748 section 6.1) with an OperationError.
            throw new InvalidKeyError("X25519 public key is invalid or of low order");
          }
          if (isAllZero(shared)) throw new InvalidKeyError("X25519 public key is invalid or of low order");
          return shared;
        },
        () => noble.x25519(priv, pub),
      );
    },
    async ed25519PublicKey(seed) {
      checkLength(seed, KEY_BYTES, "Ed25519 seed");
      return supported(
        "Ed25519",
        () => publicOf("Ed25519", seed),
        () => noble.ed25519PublicKey(seed),
      );
    },
    async ed25519Sign(seed, message) {
      checkLength(seed, KEY_BYTES, "Ed25519 seed");
      return supported(
        "Ed25519",
        async () => new Uint8Array(await subtle.sign("Ed25519", await privateKey("Ed25519", seed, false, ["sign"]), buf(message))),
        () => noble.ed25519Sign(seed, message),
      );
    },
  };
}
