/**
 * The Double Ratchet KDFs (Signal, "The Double Ratchet Algorithm", rev. 4, section 5.2
 * recommendations) instantiated with HKDF-SHA256 / HMAC-SHA256 and AES-256-GCM.
 */
import type { CryptoProvider } from "../crypto/provider.js";
import { RATCHET_MESSAGE_LABEL, RATCHET_ROOT_LABEL } from "./labels.js";

const MESSAGE_KEY_SEED = new Uint8Array([0x01]);
const CHAIN_KEY_SEED = new Uint8Array([0x02]);
const EMPTY = new Uint8Array(0);

/** KDF_RK: HKDF(salt = root key, ikm = DH output, info = "sealpost.ratchet.root.v1", 64) -> (root key, chain key). */
export function kdfRoot(provider: CryptoProvider, rootKey: Uint8Array, dhOutput: Uint8Array): { rootKey: Uint8Array; chainKey: Uint8Array } {
  const out = provider.hkdf(dhOutput, rootKey, RATCHET_ROOT_LABEL, 64);
  return { rootKey: out.slice(0, 32), chainKey: out.slice(32, 64) };
}

/** KDF_CK: message key = HMAC(ck, 0x01), next chain key = HMAC(ck, 0x02) (as in Signal). */
export function kdfChain(provider: CryptoProvider, chainKey: Uint8Array): { messageKey: Uint8Array; chainKey: Uint8Array } {
  return { messageKey: provider.hmacSha256(chainKey, MESSAGE_KEY_SEED), chainKey: provider.hmacSha256(chainKey, CHAIN_KEY_SEED) };
}

/** Expands a message key: HKDF(salt = empty, ikm = mk, info = "sealpost.ratchet.message.v1", 44) -> AES key || nonce. */
export function messageKeyMaterial(provider: CryptoProvider, messageKey: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const out = provider.hkdf(messageKey, EMPTY, RATCHET_MESSAGE_LABEL, 44);
  return { key: out.subarray(0, 32), nonce: out.subarray(32, 44) };
}
