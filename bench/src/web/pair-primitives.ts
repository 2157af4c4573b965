/**
 * The crypto primitives of one steady 1:1 pair (a 1 KiB text encrypted and decrypted in an
 * established session), alone: what a provider spends on a pair before any protocol code.
 * Per side: one chain step (two HMAC-SHA256 with one key), AES-256-GCM over the padded body
 * (1,088 bytes) and over the entry payload (~100 bytes), SHA-256 of the sealed body.
 *
 * Two forms: through a CryptoProvider (@noble, node:crypto: work done in the call itself), and
 * through WebCrypto (`crypto.subtle`: every call a round trip to the engine, every raw key an
 * import), which is what the WebCrypto provider does per pair. Also, the same two ways: a DH
 * ratchet key (what a session setup and every DH ratchet step repeat), the SHA-256 of a body
 * and one Ed25519 verification. Runs in Node and in a browser page alike (web-bench.ts).
 */
import type { CryptoProvider } from "@sealpost/client/crypto";

const BODY = new Uint8Array(1088).fill(0x78);
const ENTRY = new Uint8Array(100).fill(0x2a);
const BODY_AD = new Uint8Array(40).fill(1);
const ENTRY_AD = new Uint8Array(132).fill(2);
const NONCE = new Uint8Array(12);
const ONE = new Uint8Array([1]);
const TWO = new Uint8Array([2]);

/** One pair through a provider; the chain key moves on every call. */
export function providerPair(p: CryptoProvider): () => Promise<void> {
  let sending: Uint8Array = p.random(32);
  let receiving: Uint8Array = sending.slice();
  return async () => {
    const mk = await p.hmacSha256(sending, ONE);
    sending = await p.hmacSha256(sending, TWO);
    const contentKey = p.random(32);
    const body = await p.aesGcmSeal(contentKey, NONCE, BODY, BODY_AD);
    const hash = p.sha256(body);
    const entry = await p.aesGcmSeal(mk, NONCE, ENTRY, ENTRY_AD);

    const rk = await p.hmacSha256(receiving, ONE);
    receiving = await p.hmacSha256(receiving, TWO);
    if ((await p.aesGcmOpen(rk, NONCE, entry, ENTRY_AD)) === undefined) throw new Error("entry did not open");
    if (p.sha256(body)[0] !== hash[0]) throw new Error("hash differs");
    if ((await p.aesGcmOpen(contentKey, NONCE, body, BODY_AD)) === undefined) throw new Error("body did not open");
  };
}

const HMAC = { name: "HMAC", hash: "SHA-256" } as const;
const gcm = (additionalData: Uint8Array) => ({ name: "AES-GCM", iv: NONCE, additionalData });

/** The same pair through WebCrypto, keys imported from raw bytes as the protocol holds them. */
export function webCryptoPair(subtle: SubtleCrypto, random: (n: number) => Uint8Array<ArrayBuffer>): () => Promise<void> {
  let sending = random(32);
  let receiving = sending.slice();
  const chainStep = async (ck: Uint8Array<ArrayBuffer>): Promise<[Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>]> => {
    const key = await subtle.importKey("raw", ck, HMAC, false, ["sign"]);
    return [new Uint8Array(await subtle.sign("HMAC", key, ONE)), new Uint8Array(await subtle.sign("HMAC", key, TWO))];
  };
  const aes = (raw: Uint8Array<ArrayBuffer>, use: "encrypt" | "decrypt") => subtle.importKey("raw", raw, "AES-GCM", false, [use]);
  return async () => {
    const [mk, nextSending] = await chainStep(sending);
    sending = nextSending;
    const contentKey = random(32);
    const body = new Uint8Array(await subtle.encrypt(gcm(BODY_AD), await aes(contentKey, "encrypt"), BODY));
    const hash = new Uint8Array(await subtle.digest("SHA-256", body));
    const entry = new Uint8Array(await subtle.encrypt(gcm(ENTRY_AD), await aes(mk, "encrypt"), ENTRY));

    const [rk, nextReceiving] = await chainStep(receiving);
    receiving = nextReceiving;
    await subtle.decrypt(gcm(ENTRY_AD), await aes(rk, "decrypt"), entry);
    if (new Uint8Array(await subtle.digest("SHA-256", body))[0] !== hash[0]) throw new Error("hash differs");
    await subtle.decrypt(gcm(BODY_AD), await aes(contentKey, "decrypt"), body);
  };
}

/**
 * A DH ratchet key through a provider: a new X25519 key pair and one agreement with the
 * peer's raw public key (what a sending DH ratchet step and, halved, a receiving one cost).
 */
export async function providerRatchetKey(p: CryptoProvider): Promise<() => Promise<void>> {
  const peer = await p.x25519PublicKey(p.random(32));
  return async () => {
    const priv = p.random(32);
    await p.x25519PublicKey(priv);
    await p.x25519(priv, peer);
  };
}

/**
 * The same through WebCrypto: generate the pair, export its public half (the header carries
 * it) and its private half (session state is stored as bytes), import the peer's key, agree.
 */
export async function webCryptoRatchetKey(subtle: SubtleCrypto, p: CryptoProvider): Promise<() => Promise<void>> {
  const peerRaw = new Uint8Array(await p.x25519PublicKey(p.random(32)));
  return async () => {
    const pair = (await subtle.generateKey({ name: "X25519" }, true, ["deriveBits"])) as CryptoKeyPair;
    await subtle.exportKey("raw", pair.publicKey);
    await subtle.exportKey("jwk", pair.privateKey);
    const peer = await subtle.importKey("raw", peerRaw, { name: "X25519" }, false, []);
    await subtle.deriveBits({ name: "X25519", public: peer }, pair.privateKey, 256);
  };
}

/** SHA-256 of a sealed 1 KiB body (1,112 bytes), through a provider (synchronous). */
export function providerBodyDigest(p: CryptoProvider): () => Promise<void> {
  const body = new Uint8Array(1112).fill(0x5a);
  return async () => {
    p.sha256(body);
  };
}

/** The same through WebCrypto's digest. */
export function webCryptoBodyDigest(subtle: SubtleCrypto): () => Promise<void> {
  const body = new Uint8Array(1112).fill(0x5a);
  return async () => {
    await subtle.digest("SHA-256", body);
  };
}

/** One Ed25519 verification (a group message's signature, 200 signed bytes), through a provider. */
export async function providerVerify(p: CryptoProvider): Promise<() => Promise<void>> {
  const seed = p.random(32);
  const message = new Uint8Array(200).fill(1);
  const [publicKey, signature] = [await p.ed25519PublicKey(seed), await p.ed25519Sign(seed, message)];
  return async () => {
    if (!(await p.ed25519Verify(publicKey, message, signature))) throw new Error("signature did not verify");
  };
}

/** The same through WebCrypto, the public key imported from raw bytes each time. */
export async function webCryptoVerify(subtle: SubtleCrypto, p: CryptoProvider): Promise<() => Promise<void>> {
  const seed = p.random(32);
  const message = new Uint8Array(200).fill(1);
  const publicKey = new Uint8Array(await p.ed25519PublicKey(seed));
  const signature = new Uint8Array(await p.ed25519Sign(seed, message));
  return async () => {
    const key = await subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    if (!(await subtle.verify("Ed25519", key, signature, message))) throw new Error("signature did not verify");
  };
}
