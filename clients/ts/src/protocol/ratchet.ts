/**
 * The Double Ratchet (Signal, "The Double Ratchet Algorithm", rev. 4, 2016/2025) with
 * header fields authenticated, not encrypted, and a bounded MKSKIPPED.
 *
 * Decryption never mutates the state until the AEAD tag has verified: `planDecrypt` computes
 * everything on the side and returns `commit()`. A forged, corrupt, replayed or too-far-ahead
 * message therefore leaves the session exactly as it was.
 */
import { bytesEqual, wipe } from "../crypto/bytes.js";
import { DecryptionError, DuplicateMessageError, InvalidKeyError, TooFarAheadError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { kdfChain, kdfPqRoot, kdfRoot, messageKeyMaterial, openWithStepKey } from "./kdf.js";
import { RATCHET_AD_LABEL } from "./labels.js";
import { transientBytes } from "../util/transient-bytes.js";
import { MAX_FORWARD_JUMP, MAX_OLD_RATCHET_KEYS, MAX_SKIPPED_KEYS } from "./limits.js";
import type { SessionState, SkippedKey } from "./ratchet-state.js";
import {
  commitReceived,
  DEFAULT_PQ_SCHEDULE,
  headerFields,
  initialPqState,
  receivingSecret,
  sendingStep,
  type PqHeaderFields,
  type PqSchedule,
} from "./pq-ratchet.js";

/** The authenticated header of a RatchetMessage (the KEM fields: version 2 only). */
export interface RatchetHeader extends PqHeaderFields {
  ratchetKey: Uint8Array;
  previousCounter: number;
  counter: number;
}

const AD_LENGTH = RATCHET_AD_LABEL.length + 1 + 32 + 32 + 32 + 4 + 4;

/**
 * The associated data of a RatchetMessage: a fixed 132-byte layout,
 * "sealpost.ratchet-message.v1" (27) || u8 version (1) || sender IK (32) || recipient IK (32)
 * || ratchet_key (32) || u32be previous_chain_length || u32be counter; version 2 appends
 * u32be kem_public_key_id || u32be length || kem_public_key || u32be kem_ciphertext_key_id ||
 * u32be length || kem_ciphertext (ids 0 and lengths 0 when absent).
 */
export function ratchetAssociatedData(senderIdentity: Uint8Array, recipientIdentity: Uint8Array, header: RatchetHeader, version: 1 | 2 = 1): Uint8Array {
  const pub = header.kemPublicKey?.key ?? EMPTY;
  const ct = header.kemCiphertext?.ciphertext ?? EMPTY;
  // Transient: it only goes into the AEAD (util/transient-bytes.ts).
  const ad = transientBytes(AD_LENGTH + (version === 2 ? 16 + pub.length + ct.length : 0));
  let o = 0;
  ad.set(RATCHET_AD_LABEL, o);
  o += RATCHET_AD_LABEL.length;
  ad[o++] = version;
  ad.set(senderIdentity, o);
  o += 32;
  ad.set(recipientIdentity, o);
  o += 32;
  ad.set(header.ratchetKey, o);
  o += 32;
  const dv = new DataView(ad.buffer, ad.byteOffset, ad.byteLength);
  dv.setUint32(o, header.previousCounter >>> 0, false);
  dv.setUint32(o + 4, header.counter >>> 0, false);
  o += 8;
  if (version === 2) {
    dv.setUint32(o, header.kemPublicKey?.id ?? 0, false);
    dv.setUint32(o + 4, pub.length, false);
    ad.set(pub, o + 8);
    o += 8 + pub.length;
    dv.setUint32(o, header.kemCiphertext?.keyId ?? 0, false);
    dv.setUint32(o + 4, ct.length, false);
    ad.set(ct, o + 8);
  }
  return ad;
}

const EMPTY = new Uint8Array(0);

/** Sender-side choices that do not change how messages are read. */
export interface EncryptOptions {
  /** The clock, for the PQ ratchet's time-based schedule. */
  nowMs?: number;
  pqSchedule?: PqSchedule;
}

/** RatchetInitAlice: the initiator's state from SK and the responder's signed prekey. Draws 32 random bytes. */
export async function initInitiator(
  provider: CryptoProvider,
  sharedSecret: Uint8Array,
  localIdentityKey: Uint8Array,
  remoteIdentityKey: Uint8Array,
  remoteSignedPrekey: Uint8Array,
  baseKey: Uint8Array,
  nowMs: number,
  version: 1 | 2,
): Promise<SessionState> {
  const sendingRatchetPrivate = provider.random(32);
  const sendingRatchetKey = await provider.x25519PublicKey(sendingRatchetPrivate);
  const dh = await provider.x25519(sendingRatchetPrivate, remoteSignedPrekey);
  const { rootKey, chainKey } = await kdfRoot(provider, sharedSecret, dh);
  wipe(dh, sharedSecret);
  return {
    version,
    ...(version === 2 ? { pq: initialPqState(nowMs) } : {}),
    localIdentityKey,
    remoteIdentityKey,
    baseKey,
    initiator: true,
    rootKey,
    sendingRatchetPrivate,
    sendingRatchetKey,
    sendingChainKey: chainKey,
    sendingCounter: 0,
    previousCounter: 0,
    receivingRatchetKey: remoteSignedPrekey,
    receivingChainKey: undefined,
    receivingCounter: 0,
    oldRatchetKeys: [],
    skipped: [],
    createdAtMs: nowMs,
  };
}

/** RatchetInitBob: the responder's state; its first ratchet key pair is the signed prekey. */
export function initResponder(
  sharedSecret: Uint8Array,
  localIdentityKey: Uint8Array,
  remoteIdentityKey: Uint8Array,
  signedPrekeyPrivate: Uint8Array,
  signedPrekeyPublic: Uint8Array,
  baseKey: Uint8Array,
  nowMs: number,
  version: 1 | 2,
): SessionState {
  return {
    version,
    ...(version === 2 ? { pq: initialPqState(nowMs) } : {}),
    localIdentityKey,
    remoteIdentityKey,
    baseKey,
    initiator: false,
    rootKey: sharedSecret,
    sendingRatchetPrivate: signedPrekeyPrivate.slice(),
    sendingRatchetKey: signedPrekeyPublic,
    sendingChainKey: undefined,
    sendingCounter: 0,
    previousCounter: 0,
    receivingRatchetKey: undefined,
    receivingChainKey: undefined,
    receivingCounter: 0,
    oldRatchetKeys: [],
    skipped: [],
    createdAtMs: nowMs,
  };
}

/** True when the session can send now (the responder must first receive). */
export function canSend(state: SessionState): boolean {
  return state.sendingChainKey !== undefined || state.receivingRatchetKey !== undefined;
}

/**
 * RatchetEncrypt. Mutates `state` (sending cannot fail halfway). When a receiving DH step
 * happened since the last send, first does the sending half of the DH ratchet, drawing 32
 * random bytes for the new ratchet key (then, version 2, the PQ ratchet's draws: pq-ratchet.ts).
 */
export async function ratchetEncrypt(
  provider: CryptoProvider,
  state: SessionState,
  /** The plaintext, or a function making it once the header is known (what it carries sets the room left in an entry). */
  plaintext: Uint8Array | ((header: RatchetHeader) => Uint8Array | Promise<Uint8Array>),
  opts: EncryptOptions = {},
): Promise<{ header: RatchetHeader; ciphertext: Uint8Array }> {
  if (state.sendingChainKey === undefined) {
    if (state.receivingRatchetKey === undefined) throw new InvalidKeyError("session cannot send before it has received");
    const priv = provider.random(32);
    const pub = await provider.x25519PublicKey(priv);
    const dh = await provider.x25519(priv, state.receivingRatchetKey);
    const kemSecret = state.pq ? sendingStep(provider, state.pq, opts.nowMs, opts.pqSchedule ?? DEFAULT_PQ_SCHEDULE) : undefined;
    const next = kemSecret ? await kdfPqRoot(provider, state.rootKey, dh, kemSecret) : await kdfRoot(provider, state.rootKey, dh);
    wipe(dh, state.rootKey, state.sendingRatchetPrivate);
    if (kemSecret) wipe(kemSecret);
    state.previousCounter = state.sendingCounter;
    state.sendingCounter = 0;
    state.sendingRatchetPrivate = priv;
    state.sendingRatchetKey = pub;
    state.rootKey = next.rootKey;
    state.sendingChainKey = next.chainKey;
  }
  const header: RatchetHeader = {
    ratchetKey: state.sendingRatchetKey,
    previousCounter: state.previousCounter,
    counter: state.sendingCounter,
    ...(state.pq ? headerFields(state.pq, state.sendingCounter) : {}),
  };
  const plain = typeof plaintext === "function" ? await plaintext(header) : plaintext;
  const step = kdfChain(state.sendingChainKey);
  const { key, nonce } = messageKeyMaterial(step.messageKey);
  const ad = ratchetAssociatedData(state.localIdentityKey, state.remoteIdentityKey, header, state.version);
  const ciphertext = await provider.aesGcmSeal(key, nonce, plain, ad);
  wipe(step.messageKey, state.sendingChainKey);
  state.sendingChainKey = step.chainKey;
  state.sendingCounter++;
  if (state.pq) state.pq.sentSinceStep++;
  return { header, ciphertext };
}

/** A verified decryption whose state change has not been applied yet. */
export interface DecryptPlan {
  plaintext: Uint8Array;
  /** Applies the state change to the state the plan was made from. Call at most once. */
  commit(): void;
  /** Wipes the side-computed keys without applying them. */
  discard(): void;
}

function findSkipped(state: SessionState, ratchetKey: Uint8Array, counter: number): number {
  const s = state.skipped;
  for (let i = s.length - 1; i >= 0; i--) {
    if (s[i].counter === counter && bytesEqual(s[i].ratchetKey, ratchetKey)) return i;
  }
  return -1;
}

async function open(provider: CryptoProvider, state: SessionState, header: RatchetHeader, messageKey: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
  const { key, nonce } = messageKeyMaterial(messageKey);
  const ad = ratchetAssociatedData(state.remoteIdentityKey, state.localIdentityKey, header, state.version);
  const plaintext = await provider.aesGcmOpen(key, nonce, ciphertext, ad);
  if (plaintext === undefined) throw new DecryptionError("message authentication failed");
  return plaintext;
}

/** Derives the keys of messages [from, to) of a chain; returns them and the chain key at `to`. */
function skipKeys(ratchetKey: Uint8Array, chainKey: Uint8Array, from: number, to: number, out: SkippedKey[]): Uint8Array {
  let ck = chainKey;
  for (let n = from; n < to; n++) {
    const step = kdfChain(ck);
    out.push({ ratchetKey, counter: n, messageKey: step.messageKey });
    if (ck !== chainKey) wipe(ck);
    ck = step.chainKey;
  }
  return ck;
}

function storeSkipped(state: SessionState, added: SkippedKey[]): void {
  if (added.length === 0) return;
  for (const k of added) state.skipped.push(k);
  const excess = state.skipped.length - MAX_SKIPPED_KEYS;
  if (excess > 0) for (const k of state.skipped.splice(0, excess)) wipe(k.messageKey);
}

/**
 * RatchetDecrypt, planned: throws DuplicateMessageError, TooFarAheadError, DecryptionError or
 * InvalidKeyError without touching `state`; on success returns the plaintext and a commit.
 */
export async function planDecrypt(
  provider: CryptoProvider,
  state: SessionState,
  header: RatchetHeader,
  ciphertext: Uint8Array,
  nowMs?: number,
): Promise<DecryptPlan> {
  if (!state.pq && (header.kemPublicKey || header.kemCiphertext)) throw new DecryptionError("KEM fields in a message of a version 1 session");
  const pq = state.pq;
  // 1. A key skipped earlier.
  const idx = findSkipped(state, header.ratchetKey, header.counter);
  if (idx >= 0) {
    const entry = state.skipped[idx];
    const plaintext = await open(provider, state, header, entry.messageKey, ciphertext);
    return {
      plaintext,
      commit() {
        const at = state.skipped.indexOf(entry);
        if (at >= 0) state.skipped.splice(at, 1);
        wipe(entry.messageKey);
        state.pendingPrekey = undefined;
        if (pq) commitReceived(pq, header, false, nowMs);
      },
      discard() {},
    };
  }

  // 2. The current receiving chain.
  if (state.receivingChainKey !== undefined && state.receivingRatchetKey !== undefined && bytesEqual(header.ratchetKey, state.receivingRatchetKey)) {
    if (header.counter < state.receivingCounter) throw new DuplicateMessageError("message key already used");
    if (header.counter - state.receivingCounter > MAX_FORWARD_JUMP) throw new TooFarAheadError("message too far ahead in its chain");
    const added: SkippedKey[] = [];
    const ck = skipKeys(header.ratchetKey, state.receivingChainKey, state.receivingCounter, header.counter, added);
    const step = kdfChain(ck);
    if (ck !== state.receivingChainKey) wipe(ck);
    // Methods, not named arrow functions: tsx names named closures per call.
    const plan: DecryptPlan = {
      plaintext: EMPTY,
      commit() {
        wipe(state.receivingChainKey);
        state.receivingChainKey = step.chainKey;
        state.receivingCounter = header.counter + 1;
        storeSkipped(state, added);
        state.pendingPrekey = undefined;
        if (pq) commitReceived(pq, header, false, nowMs);
      },
      discard() {
        wipe(step.chainKey);
        for (const k of added) wipe(k.messageKey);
      },
    };
    plan.plaintext = await openWithStepKey(step.messageKey, (mk) => open(provider, state, header, mk, ciphertext), plan.discard);
    return plan;
  }

  // 3. An earlier chain whose key for this counter is gone: consumed (or evicted).
  if (state.oldRatchetKeys.some((k) => bytesEqual(k, header.ratchetKey))) {
    throw new DuplicateMessageError("message key already used or expired");
  }

  // 4. A new ratchet key: finish the current chain up to PN, then the receiving DH step.
  if (header.counter > MAX_FORWARD_JUMP) throw new TooFarAheadError("message too far ahead in its chain");
  const added: SkippedKey[] = [];
  if (state.receivingChainKey !== undefined && state.receivingRatchetKey !== undefined) {
    if (header.previousCounter - state.receivingCounter > MAX_FORWARD_JUMP) throw new TooFarAheadError("previous chain too long");
    const end = skipKeys(state.receivingRatchetKey, state.receivingChainKey, state.receivingCounter, header.previousCounter, added);
    if (end !== state.receivingChainKey) wipe(end);
  }
  let dh: Uint8Array;
  try {
    dh = await provider.x25519(state.sendingRatchetPrivate, header.ratchetKey);
  } catch (e) {
    for (const k of added) wipe(k.messageKey);
    throw e instanceof InvalidKeyError ? new DecryptionError("invalid ratchet key") : e;
  }
  let kemSecret: Uint8Array | undefined;
  try {
    kemSecret = pq ? receivingSecret(provider, pq, header) : undefined;
  } catch (e) {
    wipe(dh);
    for (const k of added) wipe(k.messageKey);
    throw e;
  }
  const root = kemSecret ? await kdfPqRoot(provider, state.rootKey, dh, kemSecret) : await kdfRoot(provider, state.rootKey, dh);
  wipe(dh);
  if (kemSecret) wipe(kemSecret);
  const ratchetKey = header.ratchetKey.slice();
  const ck = skipKeys(ratchetKey, root.chainKey, 0, header.counter, added);
  const step = kdfChain(ck);
  if (ck !== root.chainKey) wipe(ck);
  const plan: DecryptPlan = {
    plaintext: EMPTY,
    discard() {
      wipe(step.chainKey, root.rootKey, root.chainKey);
      for (const k of added) wipe(k.messageKey);
    },
    commit() {
      if (state.receivingRatchetKey !== undefined && state.receivingChainKey !== undefined) {
        state.oldRatchetKeys.unshift(state.receivingRatchetKey);
        if (state.oldRatchetKeys.length > MAX_OLD_RATCHET_KEYS) state.oldRatchetKeys.length = MAX_OLD_RATCHET_KEYS;
      }
      wipe(state.receivingChainKey, state.rootKey, state.sendingChainKey, root.chainKey);
      state.receivingRatchetKey = ratchetKey;
      state.receivingChainKey = step.chainKey;
      state.receivingCounter = header.counter + 1;
      state.rootKey = root.rootKey;
      // The sending half of the DH step happens at the next send (ratchetEncrypt).
      state.sendingChainKey = undefined;
      storeSkipped(state, added);
      state.pendingPrekey = undefined;
      if (pq) commitReceived(pq, header, true, nowMs);
    },
  };
  plan.plaintext = await openWithStepKey(step.messageKey, (mk) => open(provider, state, header, mk, ciphertext), plan.discard);
  return plan;
}

/** Copies a state deeply (tests and store implementations that must not alias). */
export function cloneState(s: SessionState): SessionState {
  return {
    ...s,
    localIdentityKey: s.localIdentityKey.slice(),
    remoteIdentityKey: s.remoteIdentityKey.slice(),
    baseKey: s.baseKey.slice(),
    rootKey: s.rootKey.slice(),
    sendingRatchetPrivate: s.sendingRatchetPrivate.slice(),
    sendingRatchetKey: s.sendingRatchetKey.slice(),
    sendingChainKey: s.sendingChainKey?.slice(),
    receivingRatchetKey: s.receivingRatchetKey?.slice(),
    receivingChainKey: s.receivingChainKey?.slice(),
    oldRatchetKeys: s.oldRatchetKeys.map((k) => k.slice()),
    skipped: s.skipped.map((k) => ({ ratchetKey: k.ratchetKey.slice(), counter: k.counter, messageKey: k.messageKey.slice() })),
    pendingPrekey: s.pendingPrekey
      ? { ...s.pendingPrekey, baseKey: s.pendingPrekey.baseKey.slice(), kemCiphertext: s.pendingPrekey.kemCiphertext.slice() }
      : undefined,
    pq: s.pq && {
      ...s.pq,
      local: s.pq.local && { id: s.pq.local.id, publicKey: s.pq.local.publicKey.slice(), secretKey: s.pq.local.secretKey.slice() },
      remote: s.pq.remote && { id: s.pq.remote.id, publicKey: s.pq.remote.publicKey.slice() },
      sendingCiphertext: s.pq.sendingCiphertext && { keyId: s.pq.sendingCiphertext.keyId, ciphertext: s.pq.sendingCiphertext.ciphertext.slice() },
    },
  };
}
