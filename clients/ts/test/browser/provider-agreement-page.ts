/**
 * In the page: the WebCrypto provider against @noble on deterministic random inputs and the
 * edge cases where engines could differ (empty HMAC and HKDF keys, every HKDF length, empty
 * plaintexts, bad tags, short ciphertexts, low-order and non-canonical X25519 points).
 * window.checkAgreement(runs) returns the cases where the two disagree (none expected).
 */
import { fromHex, toHex } from "../../src/crypto/bytes.js";
import { createDeterministicRandom } from "../../src/crypto/deterministic-random.js";
import { createNobleProvider } from "../../src/crypto/noble-provider.js";
import type { CryptoProvider } from "../../src/crypto/provider.js";
import { createWebCryptoProvider } from "../../src/crypto/webcrypto-provider.js";

const web = createWebCryptoProvider();
const noble = createNobleProvider();

/** The result as hex, or the error's name: both providers must give the same. */
async function outcome(f: (p: CryptoProvider) => Promise<Uint8Array | boolean | undefined>, p: CryptoProvider): Promise<string> {
  try {
    const r = await f(p);
    return r instanceof Uint8Array ? toHex(r) : String(r);
  } catch (e) {
    return (e as Error).name;
  }
}

// Low-order points and non-canonical encodings (RFC 7748 section 6.1; u >= 2^255 - 19).
const X25519_EDGE = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
  "0900000000000000000000000000000000000000000000000000000000000080",
].map(fromHex);

const g = globalThis as Record<string, unknown>;
g.checkAgreement = async (runs: number): Promise<string[]> => {
  const random = createDeterministicRandom("browser-provider-agreement");
  const bytes = (max: number) => random(random(1)[0] % (max + 1));
  const mismatches: string[] = [];
  const same = async (what: string, f: (p: CryptoProvider) => Promise<Uint8Array | boolean | undefined>) => {
    const [a, b] = [await outcome(f, web), await outcome(f, noble)];
    if (a !== b) mismatches.push(`${what}: webcrypto ${a.slice(0, 40)} / noble ${b.slice(0, 40)}`);
  };
  for (let i = 0; i < runs; i++) {
    // Every input is drawn before the comparison: each provider gets the same bytes.
    const key = random(32);
    const [data, salt, info, ikm] = [bytes(300), bytes(64), bytes(64), bytes(64)];
    const hmacKey = i % 10 === 0 ? new Uint8Array(0) : bytes(100);
    await same(`hmac ${i}`, (p) => p.hmacSha256(hmacKey, data));
    await same(`hkdf ${i}`, (p) => p.hkdf(i % 10 === 1 ? new Uint8Array(0) : ikm, salt, info, 1 + (i % 255)));
    await same(`sha256Async ${i}`, (p) => p.sha256Async(data));
    const nonce = random(12);
    const sealed = await noble.aesGcmSeal(key, nonce, i % 10 === 2 ? new Uint8Array(0) : data, salt);
    await same(`aes-gcm seal ${i}`, (p) => p.aesGcmSeal(key, nonce, i % 10 === 2 ? new Uint8Array(0) : data, salt));
    await same(`aes-gcm open ${i}`, (p) => p.aesGcmOpen(key, nonce, sealed, salt));
    const bad = sealed.slice();
    bad[i % bad.length] ^= 1;
    await same(`aes-gcm tampered ${i}`, (p) => p.aesGcmOpen(key, nonce, bad, salt));
    await same(`aes-gcm short ${i}`, (p) => p.aesGcmOpen(key, nonce, sealed.subarray(0, i % 16), salt));
    const [priv, point] = [random(32), random(32)];
    await same(`x25519 public ${i}`, (p) => p.x25519PublicKey(priv));
    await same(`x25519 random point ${i}`, (p) => p.x25519(priv, point));
    await same(`x25519 edge ${i}`, (p) => p.x25519(priv, X25519_EDGE[i % X25519_EDGE.length]));
    await same(`ed25519 public ${i}`, (p) => p.ed25519PublicKey(key));
    await same(`ed25519 sign ${i}`, (p) => p.ed25519Sign(key, data));
  }
  return mismatches;
};
