/**
 * Sender keys: one group message = one body encryption, readable by every member device
 * (Signal's "Sender Keys" / libsignal group_cipher, re-specified in docs/PROTOCOL.md, "Groups").
 *
 * Each sending device has, per group, a sending chain and an Ed25519 signing key:
 *
 *   mk_i      = HMAC-SHA256(ck_i, 0x01)            (kdfChain, as SenderChainKey in libsignal)
 *   ck_{i+1}  = HMAC-SHA256(ck_i, 0x02)
 *   header    = "sealpost.sender-key-message.v1" (30) || u8 version || group_id (16)
 *               || distribution_id (16) || u32be chain_id || u32be iteration        (71 bytes)
 *   ct        = AES-256-GCM(key = mk_i, nonce = 12 zero bytes, pad(Content), ad = header)
 *   signature = Ed25519(signing key, header || ct)
 *
 * Every message key encrypts exactly one message, so the nonce is fixed (as kdf.ts). Members
 * hold the chain key (they can derive message keys) but not the signing key, so the signature
 * is what stops one member from forging another's messages. The chain only moves forward, so
 * a member given the key at iteration n cannot read iterations < n (new members cannot read
 * earlier messages); rotation (a new distribution id, chain key and signing key, sent only to
 * the remaining members) shuts out removed ones.
 *
 * Receiving is planned like ratchet.ts: signature, bounds and AEAD are checked on the side and
 * the record changes only in `commit()`, so forged, replayed or too-far-ahead messages leave
 * it exactly as it was.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { SenderKeyDistributionSchema, type SenderKeyDistribution } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { SharedBodySchema, type SenderKeyMessage } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { bytesEqual, concatBytes, wipe } from "../crypto/bytes.js";
import {
  DecryptionError,
  DuplicateMessageError,
  InvalidMessageError,
  InvalidSignatureError,
  NoSessionError,
  TooFarAheadError,
  UnsupportedVersionError,
} from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import {
  DISTRIBUTION_ID_BYTES,
  GROUP_ID_BYTES,
  MAX_SENDER_KEY_FORWARD_JUMP,
  MAX_SENDER_KEY_SKIPPED,
  MAX_SENDER_KEY_STATES,
  SENDER_KEY_MESSAGE_LABEL,
  SENDER_KEY_VERSION,
} from "./group-labels.js";
import { kdfChain, openWithStepKey, ZERO_NONCE } from "./kdf.js";
import { pad, unpad } from "./padding.js";
import { encodeSenderKeySharedBody } from "./wire.js";

/** The SharedBody writer lives with the other hand-written encoders (wire.ts). */
export { encodeSenderKeySharedBody };

const MAX_ITERATION = 0xffffffff;
export const SENDER_KEY_HEADER_BYTES = SENDER_KEY_MESSAGE_LABEL.length + 1 + GROUP_ID_BYTES + DISTRIBUTION_ID_BYTES + 4 + 4;

/** This device's sending key for one group (private: never leaves the device). */
export interface OwnSenderKey {
  groupId: Uint8Array;
  distributionId: Uint8Array;
  chainId: number;
  /** The next iteration to send. */
  iteration: number;
  /** The chain key at `iteration`. */
  chainKey: Uint8Array;
  /** Ed25519 seed and public key signing this distribution's messages. */
  signingSeed: Uint8Array;
  signingKey: Uint8Array;
  createdAtMs: number;
}

/** A message key kept for a message that has not arrived yet. */
export interface SkippedSenderKey {
  iteration: number;
  messageKey: Uint8Array;
}

/** One receiving chain of a remote sender. */
export interface SenderKeyChain {
  chainId: number;
  signingKey: Uint8Array;
  /** The next iteration expected. */
  iteration: number;
  /** The chain key at `iteration`. */
  chainKey: Uint8Array;
  /** Keys of skipped iterations, oldest first, at most MAX_SENDER_KEY_SKIPPED. */
  skipped: SkippedSenderKey[];
}

/** What a receiver holds for one (sender device, distribution id). Plain data (JSON-able). */
export interface SenderKeyRecord {
  groupId: Uint8Array;
  distributionId: Uint8Array;
  /** Newest first, at most MAX_SENDER_KEY_STATES. */
  chains: SenderKeyChain[];
  createdAtMs: number;
}

/**
 * A new sending key for a group: a fresh distribution id, chain id, chain key and signing key.
 * Random bytes are drawn in this order: distribution id (16), chain id (4), chain key (32),
 * signing seed (32).
 */
export async function createOwnSenderKey(provider: CryptoProvider, groupId: Uint8Array, nowMs: number): Promise<OwnSenderKey> {
  if (groupId.length !== GROUP_ID_BYTES) throw new InvalidMessageError("group_id must be 16 bytes");
  const distributionId = provider.random(DISTRIBUTION_ID_BYTES);
  const c = provider.random(4);
  const chainId = ((c[0] << 24) | (c[1] << 16) | (c[2] << 8) | c[3]) >>> 0;
  const chainKey = provider.random(32);
  const signingSeed = provider.random(32);
  return {
    groupId: groupId.slice(),
    distributionId,
    chainId,
    iteration: 0,
    chainKey,
    signingSeed,
    signingKey: await provider.ed25519PublicKey(signingSeed),
    createdAtMs: nowMs,
  };
}

/** The SenderKeyDistribution of the key's current position (carries a copy of the chain key). */
export function senderKeyDistribution(own: OwnSenderKey): SenderKeyDistribution {
  return create(SenderKeyDistributionSchema, {
    groupId: own.groupId.slice(),
    distributionId: own.distributionId.slice(),
    chainId: own.chainId,
    iteration: own.iteration,
    chainKey: own.chainKey.slice(),
    signingKey: own.signingKey.slice(),
  });
}

/** The 71-byte header: associated data of the AEAD and prefix of the signed bytes. */
export function senderKeyHeader(groupId: Uint8Array, distributionId: Uint8Array, chainId: number, iteration: number): Uint8Array {
  const h = new Uint8Array(SENDER_KEY_HEADER_BYTES);
  let o = 0;
  h.set(SENDER_KEY_MESSAGE_LABEL, o);
  o += SENDER_KEY_MESSAGE_LABEL.length;
  h[o++] = SENDER_KEY_VERSION;
  h.set(groupId, o);
  o += GROUP_ID_BYTES;
  h.set(distributionId, o);
  o += DISTRIBUTION_ID_BYTES;
  const dv = new DataView(h.buffer);
  dv.setUint32(o, chainId >>> 0, false);
  dv.setUint32(o + 4, iteration >>> 0, false);
  return h;
}

/**
 * Encrypts serialized Content under the sender key and returns the serialized SharedBody
 * (`sender_key` case). Advances `own` by one iteration: the caller must save it before the
 * ciphertext leaves the device, so an iteration is never used twice.
 */
export async function senderKeyEncrypt(provider: CryptoProvider, own: OwnSenderKey, content: Uint8Array): Promise<Uint8Array> {
  if (own.iteration >= MAX_ITERATION) throw new InvalidMessageError("sender key chain exhausted; rotate");
  const step = kdfChain(own.chainKey);
  const header = senderKeyHeader(own.groupId, own.distributionId, own.chainId, own.iteration);
  const padded = pad(content);
  const ciphertext = await provider.aesGcmSeal(step.messageKey, ZERO_NONCE, padded, header);
  wipe(padded, step.messageKey);
  const signature = await provider.ed25519Sign(own.signingSeed, concatBytes(header, ciphertext));
  const body = encodeSenderKeySharedBody(own.distributionId, own.chainId, own.iteration, ciphertext, signature);
  wipe(own.chainKey);
  own.chainKey = step.chainKey;
  own.iteration++;
  return body;
}

/** Checks a distribution's field sizes; throws InvalidMessageError. */
export function validateDistribution(d: SenderKeyDistribution): void {
  if (d.groupId.length !== GROUP_ID_BYTES) throw new InvalidMessageError("distribution group_id must be 16 bytes");
  if (d.distributionId.length !== DISTRIBUTION_ID_BYTES) throw new InvalidMessageError("distribution_id must be 16 bytes");
  if (d.chainKey.length !== 32) throw new InvalidMessageError("distribution chain_key must be 32 bytes");
  if (d.signingKey.length !== 32) throw new InvalidMessageError("distribution signing_key must be 32 bytes");
}

/**
 * Adds a distribution (received over the pairwise session of its sender device) to the
 * record of that (sender, distribution id). Returns the record to save. A chain already
 * held is kept as it is (re-adding it at an older iteration would revive consumed keys);
 * the same chain id with another signing key is refused.
 */
export function processSenderKeyDistribution(record: SenderKeyRecord | undefined, d: SenderKeyDistribution, nowMs: number): SenderKeyRecord {
  validateDistribution(d);
  const r: SenderKeyRecord = record ?? { groupId: d.groupId.slice(), distributionId: d.distributionId.slice(), chains: [], createdAtMs: nowMs };
  if (!bytesEqual(r.groupId, d.groupId) || !bytesEqual(r.distributionId, d.distributionId)) {
    throw new InvalidMessageError("distribution belongs to another group or distribution");
  }
  const existing = r.chains.find((c) => c.chainId === d.chainId);
  if (existing) {
    if (!bytesEqual(existing.signingKey, d.signingKey)) throw new InvalidMessageError("conflicting signing key for an existing sender-key chain");
    return r;
  }
  r.chains.unshift({ chainId: d.chainId, signingKey: d.signingKey.slice(), iteration: d.iteration, chainKey: d.chainKey.slice(), skipped: [] });
  while (r.chains.length > MAX_SENDER_KEY_STATES) {
    const old = r.chains.pop()!;
    wipe(old.chainKey, ...old.skipped.map((k) => k.messageKey));
  }
  return r;
}

/**
 * Checks the fields of a SenderKeyMessage that name stored records (distribution_id is a store
 * key: hex file names in file stores) before anything is looked up; throws InvalidMessageError.
 */
export function validateSenderKeyMessage(m: SenderKeyMessage): void {
  if (m.distributionId.length !== DISTRIBUTION_ID_BYTES) throw new InvalidMessageError("sender key message distribution_id must be 16 bytes");
}

/** The SenderKeyMessage of a serialized SharedBody, or undefined for other bodies. */
export function parseSenderKeyBody(sharedBody: Uint8Array): SenderKeyMessage | undefined {
  let body: ReturnType<typeof fromBinary<typeof SharedBodySchema>>;
  try {
    body = fromBinary(SharedBodySchema, sharedBody);
  } catch {
    throw new InvalidMessageError("shared body does not parse");
  }
  return body.kind.case === "senderKey" ? body.kind.value : undefined;
}

/** A verified group message whose record change has not been applied yet. */
export interface SenderKeyDecryptPlan {
  /** The serialized Content (padding removed). */
  plaintext: Uint8Array;
  chainId: number;
  iteration: number;
  /** Applies the change to the record the plan was made from. Call at most once. */
  commit(): void;
  /** Wipes side-computed keys without applying them. */
  discard(): void;
}

async function openWith(provider: CryptoProvider, messageKey: Uint8Array, header: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
  const padded = await provider.aesGcmOpen(messageKey, ZERO_NONCE, ciphertext, header);
  if (padded === undefined) throw new DecryptionError("group message authentication failed");
  try {
    return unpad(padded);
  } catch {
    throw new DecryptionError("group message padding is malformed");
  }
}

/**
 * Plans the decryption of a SenderKeyMessage with the record of its (sender, distribution id).
 * Throws, leaving the record untouched: UnsupportedVersionError, InvalidMessageError,
 * NoSessionError (no chain with that id: ask for a distribution), InvalidSignatureError,
 * DuplicateMessageError (already decrypted, or its key expired), TooFarAheadError,
 * DecryptionError.
 */
export async function planSenderKeyDecrypt(provider: CryptoProvider, record: SenderKeyRecord, m: SenderKeyMessage): Promise<SenderKeyDecryptPlan> {
  if (m.version !== SENDER_KEY_VERSION) throw new UnsupportedVersionError(`sender key message version ${m.version}`);
  if (m.distributionId.length !== DISTRIBUTION_ID_BYTES || !bytesEqual(m.distributionId, record.distributionId)) {
    throw new InvalidMessageError("sender key message names another distribution");
  }
  if (m.signature.length !== 64) throw new InvalidMessageError("sender key signature must be 64 bytes");
  const chain = record.chains.find((c) => c.chainId === m.chainId);
  if (!chain) throw new NoSessionError("no sender key chain with that id; a distribution is needed");
  const header = senderKeyHeader(record.groupId, record.distributionId, m.chainId, m.iteration);
  // The signature first: a member knows the chain key, only the sender knows the signing key.
  if (!(await provider.ed25519Verify(chain.signingKey, concatBytes(header, m.ciphertext), m.signature))) {
    throw new InvalidSignatureError("group message signature does not verify");
  }

  if (m.iteration < chain.iteration) {
    const at = chain.skipped.findIndex((k) => k.iteration === m.iteration);
    if (at < 0) throw new DuplicateMessageError("group message key already used or expired");
    const entry = chain.skipped[at];
    const plaintext = await openWith(provider, entry.messageKey, header, m.ciphertext);
    return {
      plaintext,
      chainId: m.chainId,
      iteration: m.iteration,
      commit() {
        const i = chain.skipped.indexOf(entry);
        if (i >= 0) chain.skipped.splice(i, 1);
        wipe(entry.messageKey);
      },
      discard() {},
    };
  }

  if (m.iteration - chain.iteration > MAX_SENDER_KEY_FORWARD_JUMP) throw new TooFarAheadError("group message too far ahead in its chain");
  const added: SkippedSenderKey[] = [];
  let ck = chain.chainKey;
  for (let i = chain.iteration; i < m.iteration; i++) {
    const s = kdfChain(ck);
    added.push({ iteration: i, messageKey: s.messageKey });
    if (ck !== chain.chainKey) wipe(ck);
    ck = s.chainKey;
  }
  const step = kdfChain(ck);
  if (ck !== chain.chainKey) wipe(ck);
  const discard = () => {
    wipe(step.chainKey);
    for (const k of added) wipe(k.messageKey);
  };
  const plaintext = await openWithStepKey(step.messageKey, (mk) => openWith(provider, mk, header, m.ciphertext), discard);
  return {
    plaintext,
    chainId: m.chainId,
    iteration: m.iteration,
    commit() {
      wipe(chain.chainKey);
      chain.chainKey = step.chainKey;
      chain.iteration = m.iteration + 1;
      for (const k of added) chain.skipped.push(k);
      const excess = chain.skipped.length - MAX_SENDER_KEY_SKIPPED;
      if (excess > 0) for (const k of chain.skipped.splice(0, excess)) wipe(k.messageKey);
    },
    discard,
  };
}

/** Deep copy (stores that must not alias, tests). */
export function cloneSenderKeyRecord(r: SenderKeyRecord): SenderKeyRecord {
  return {
    groupId: r.groupId.slice(),
    distributionId: r.distributionId.slice(),
    createdAtMs: r.createdAtMs,
    chains: r.chains.map((c) => ({
      chainId: c.chainId,
      signingKey: c.signingKey.slice(),
      iteration: c.iteration,
      chainKey: c.chainKey.slice(),
      skipped: c.skipped.map((k) => ({ iteration: k.iteration, messageKey: k.messageKey.slice() })),
    })),
  };
}

/** Wipes every secret of a record (after removal). */
export function wipeSenderKeyRecord(r: SenderKeyRecord): void {
  for (const c of r.chains) wipe(c.chainKey, ...c.skipped.map((k) => k.messageKey));
}
