/**
 * The crypto provider: every primitive sealpost uses, behind one small interface so the
 * portable `@noble/*` implementation, the `node:crypto` fast path and the browsers' WebCrypto
 * are interchangeable.
 *
 * The keyed primitives return promises, because WebCrypto has them only asynchronously (and
 * runs them natively, ~3x faster than JavaScript in Chromium); on Node an await of a value
 * that is already there costs well under a microsecond. Randomness, SHA-2 and ML-KEM stay
 * synchronous: hashes are computed inline (Merkle proofs, list hashes) and no browser has
 * ML-KEM in WebCrypto; message bodies and files are hashed through sha256Async.
 *
 * Contract: for the same inputs every provider returns identical bytes (cross-tested in
 * clients/ts/test/provider-agreement.test.ts and against conformance/vectors). Randomness is
 * never drawn inside a primitive; key generation takes its secret bytes from `random`, which
 * tests and vectors replace with a deterministic source. Outputs are views: read them through
 * byteOffset/byteLength, never through `.buffer` alone (node:crypto's results, like Node's
 * Buffers, may share a larger ArrayBuffer).
 */
export interface CryptoProvider {
  /** "noble", "node" or "webcrypto", for reports and benchmarks. */
  readonly name: string;
  /** n cryptographically secure random bytes (injected; deterministic in tests). */
  random(n: number): Uint8Array;

  /** SHA-256 (FIPS 180-4), inline (Merkle proofs, keys, short inputs). */
  sha256(data: Uint8Array): Uint8Array;
  /**
   * SHA-256 of message bodies and files: the same bytes as sha256, computed natively where only
   * an asynchronous API has it (WebCrypto's digest: ~3.9x @noble's speed for 1 KiB in Chromium).
   */
  sha256Async(data: Uint8Array): Promise<Uint8Array>;
  /** SHA-512 (FIPS 180-4). */
  sha512(data: Uint8Array): Uint8Array;
  /** HMAC-SHA256 (RFC 2104). */
  hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
  /** HKDF-SHA256 (RFC 5869); an empty salt means HashLen zero bytes, as in the RFC. */
  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;

  /** AES-256-GCM encrypt (NIST SP 800-38D), 12-byte nonce; returns ciphertext || 16-byte tag. */
  aesGcmSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** AES-256-GCM decrypt; returns undefined when the tag does not verify (never throws for that). */
  aesGcmOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array | undefined>;

  /** X25519 public key of a 32-byte private key (RFC 7748; clamping is internal). */
  x25519PublicKey(privateKey: Uint8Array): Promise<Uint8Array>;
  /** X25519 shared secret; throws InvalidKeyError for malformed or low-order public keys. */
  x25519(privateKey: Uint8Array, publicKey: Uint8Array): Promise<Uint8Array>;

  /** Ed25519 public key of a 32-byte seed (RFC 8032). */
  ed25519PublicKey(seed: Uint8Array): Promise<Uint8Array>;
  /** Ed25519 signature (64 bytes, deterministic). */
  ed25519Sign(seed: Uint8Array, message: Uint8Array): Promise<Uint8Array>;
  /** The protocol's Ed25519 rule (ed25519-rule.ts: S < L, a canonical key not of small order, the cofactorless equation); false on any malformed input. */
  ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean>;

  /** ML-KEM-768 key generation from a 64-byte seed d || z (FIPS 203 ML-KEM.KeyGen_internal). */
  mlKemKeygen(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array };
  /** ML-KEM-768 encapsulation with explicit 32-byte randomness m (FIPS 203 ML-KEM.Encaps_internal). */
  mlKemEncapsulate(publicKey: Uint8Array, m: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  /** ML-KEM-768 decapsulation (implicit rejection: a bad ciphertext gives a pseudorandom secret). */
  mlKemDecapsulate(ciphertext: Uint8Array, secretKey: Uint8Array): Uint8Array;
}

/** Sizes fixed by the primitives. */
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const GCM_NONCE_BYTES = 12;
export const GCM_TAG_BYTES = 16;
export const MLKEM768_PUBLIC_KEY_BYTES = 1184;
export const MLKEM768_SECRET_KEY_BYTES = 2400;
export const MLKEM768_CIPHERTEXT_BYTES = 1088;

/** A source of random bytes, e.g. `node:crypto` randomBytes or a deterministic test stream. */
export type RandomSource = (n: number) => Uint8Array;
