/**
 * Every domain-separation label of protocol v1, in one place. docs/PROTOCOL.md lists the
 * same strings; the first three are fixed by the proto comments (directory/v1).
 */
import { utf8 } from "../crypto/bytes.js";

/** Ed25519 over label || dh_key (DeviceIdentity.dh_key_signature, LinkCode). */
export const IDENTITY_LABEL = utf8("sealpost.identity.v1");
/** Ed25519 over label || u32be(key_id) || public_key (SignedPrekey.signature). */
export const SIGNED_PREKEY_LABEL = utf8("sealpost.signed-prekey.v1");
/** Ed25519 over label || u32be(key_id) || public_key (KemPrekey.signature). */
export const KEM_PREKEY_LABEL = utf8("sealpost.kem-prekey.v1");
/** HKDF info prefix of the PQXDH session secret. */
export const PQXDH_LABEL = utf8("sealpost.pqxdh.v1");
/** HKDF info of the root-key step KDF_RK. */
export const RATCHET_ROOT_LABEL = utf8("sealpost.ratchet.root.v1");
/** HKDF info of KDF_RK when a PQ ratchet step mixes a KEM shared secret in (version 2). */
export const RATCHET_PQ_ROOT_LABEL = utf8("sealpost.ratchet.pq-root.v1");
/** HKDF info expanding a message key into AES key and nonce. */
export const RATCHET_MESSAGE_LABEL = utf8("sealpost.ratchet.message.v1");
/** First bytes of the RatchetMessage associated data. */
export const RATCHET_AD_LABEL = utf8("sealpost.ratchet-message.v1");
/** HKDF info and associated-data prefix of SealedBody. */
export const SEALED_BODY_LABEL = utf8("sealpost.sealed-body.v1");
/** Prefix of the safety-number fingerprint input. */
export const SAFETY_NUMBER_LABEL = utf8("sealpost.safety-number.v1");

/** Protocol version carried in SealedBody, and in RatchetMessage and PrekeyMessage of classical (version 1) sessions. */
export const PROTOCOL_VERSION = 1;
/** RatchetMessage and PrekeyMessage version of sessions with the post-quantum ratchet (what new sessions use). */
export const PQ_RATCHET_VERSION = 2;
/** HKDF info and AEAD label of a SealedEntry (sealed sending). */
export const SEALED_ENTRY_LABEL = utf8("sealpost.sealed-entry.v1");
