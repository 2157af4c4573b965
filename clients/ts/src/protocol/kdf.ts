/**
 * The Double Ratchet KDFs (Signal, "The Double Ratchet Algorithm", rev. 4, section 5.2
 * recommendations) instantiated with HKDF-SHA256 / HMAC-SHA256 and AES-256-GCM.
 */
import { wipe } from "../crypto/bytes.js";
import { hmacChainStep } from "../crypto/hmac-chain-step.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { RATCHET_PQ_ROOT_LABEL, RATCHET_ROOT_LABEL } from "./labels.js";

/** KDF_RK: HKDF(salt = root key, ikm = DH output, info = "sealpost.ratchet.root.v1", 64) -> (root key, chain key). */
export async function kdfRoot(provider: CryptoProvider, rootKey: Uint8Array, dhOutput: Uint8Array): Promise<{ rootKey: Uint8Array; chainKey: Uint8Array }> {
  const out = await provider.hkdf(dhOutput, rootKey, RATCHET_ROOT_LABEL, 64);
  return { rootKey: out.slice(0, 32), chainKey: out.slice(32, 64) };
}

/**
 * KDF_RK with the PQ ratchet's KEM shared secret (version 2 steps that carry a ciphertext):
 * HKDF(salt = root key, ikm = DH output || KEM shared secret, info = "sealpost.ratchet.pq-root.v1", 64).
 */
export async function kdfPqRoot(
  provider: CryptoProvider,
  rootKey: Uint8Array,
  dhOutput: Uint8Array,
  kemSecret: Uint8Array,
): Promise<{ rootKey: Uint8Array; chainKey: Uint8Array }> {
  const ikm = new Uint8Array(dhOutput.length + kemSecret.length);
  ikm.set(dhOutput);
  ikm.set(kemSecret, dhOutput.length);
  const out = await provider.hkdf(ikm, rootKey, RATCHET_PQ_ROOT_LABEL, 64);
  wipe(ikm);
  return { rootKey: out.slice(0, 32), chainKey: out.slice(32, 64) };
}

/**
 * KDF_CK: message key = HMAC(ck, 0x01), next chain key = HMAC(ck, 0x02) (as in Signal). The
 * same for every provider: a JavaScript SHA-256 sharing the key's padded blocks between the two
 * HMACs beats native calls at this size (crypto/hmac-chain-step.ts).
 */
export function kdfChain(chainKey: Uint8Array): { messageKey: Uint8Array; chainKey: Uint8Array } {
  return hmacChainStep(chainKey);
}

/**
 * Opens a message with the message key of a freshly derived chain step (1:1 ratchet and sender
 * keys alike): the key is wiped afterwards either way, and when opening fails `discard` (which
 * wipes what the decrypt plan derived) runs before the error is rethrown, so nothing is kept.
 */
export async function openWithStepKey(messageKey: Uint8Array, open: (messageKey: Uint8Array) => Promise<Uint8Array>, discard: () => void): Promise<Uint8Array> {
  try {
    return await open(messageKey);
  } catch (e) {
    discard();
    throw e;
  } finally {
    wipe(messageKey);
  }
}

/** Every AES-256-GCM key of the protocol encrypts exactly one message, so the nonce is fixed. */
export const ZERO_NONCE = new Uint8Array(12);

/**
 * The AES-256-GCM key and nonce of a message: the message key itself (32 bytes, an HMAC output,
 * used for exactly one message) and 12 zero bytes. Signal expands mk with HKDF because CBC+HMAC
 * needs 80 bytes of keys and IV; an AEAD with a single-use key needs neither.
 */
export function messageKeyMaterial(messageKey: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  return { key: messageKey, nonce: ZERO_NONCE };
}
