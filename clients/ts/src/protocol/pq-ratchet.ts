/**
 * The post-quantum ratchet of version 2 sessions (docs/PROTOCOL.md, "Post-quantum ratchet"):
 * now and then a DH ratchet step also mixes an ML-KEM-768 shared secret into the root key, so
 * a quantum adversary who can compute every X25519 secret, and who stole a session's state,
 * loses it again once a KEM key made after the theft has been used.
 *
 * Each side advertises one ratchet KEM public key at a time (on the first message of each of
 * its sending chains, until the peer has used it); the peer encapsulates to the newest one it
 * saw at its next sending DH step and carries the ciphertext on every message of that chain,
 * so whichever message of the chain arrives first can do the receiving step. When to make a
 * new key is the owner's choice alone (receivers only follow the fields): by default after 50
 * messages sent or 7 days since the last one was used, as in iMessage PQ3.
 */
import { wipe } from "../crypto/bytes.js";
import { DecryptionError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { PqRatchetState } from "./ratchet-state.js";

/** When an owner makes its next ratchet KEM key (once the peer has used the last one). */
export interface PqSchedule {
  /** Messages sent since the last key was used. */
  messages: number;
  /** Or this much time (ms) since then. */
  ms: number;
}

export const DEFAULT_PQ_SCHEDULE: PqSchedule = { messages: 50, ms: 7 * 24 * 3600 * 1000 };

/** The KEM fields of a version 2 RatchetMessage header (absent: not carried). */
export interface PqHeaderFields {
  kemPublicKey?: { id: number; key: Uint8Array };
  kemCiphertext?: { keyId: number; ciphertext: Uint8Array };
}

export function initialPqState(nowMs: number): PqRatchetState {
  return { nextLocalId: 1, remoteUsedId: 0, sentSinceStep: 0, lastStepMs: nowMs };
}

/**
 * The sending half of a DH step: encapsulates to the peer's newest unused key if there is one
 * (its shared secret goes into KDF_RK beside the DH output), and makes a new key of our own if
 * the schedule says so. Returns the shared secret; the caller wipes it. Draws 32 random bytes
 * (encapsulation) and 64 (a new key), in that order, when it does either.
 */
export function sendingStep(provider: CryptoProvider, pq: PqRatchetState, nowMs: number | undefined, schedule: PqSchedule): Uint8Array | undefined {
  let shared: Uint8Array | undefined;
  pq.sendingCiphertext = undefined;
  if (pq.remote) {
    const m = provider.random(32);
    const { ciphertext, sharedSecret } = provider.mlKemEncapsulate(pq.remote.publicKey, m);
    wipe(m);
    pq.sendingCiphertext = { keyId: pq.remote.id, ciphertext };
    pq.remoteUsedId = pq.remote.id;
    pq.remote = undefined;
    shared = sharedSecret;
  }
  const due = pq.sentSinceStep >= schedule.messages || (nowMs !== undefined && nowMs - pq.lastStepMs >= schedule.ms);
  if (!pq.local && due) {
    const seed = provider.random(64);
    const { publicKey, secretKey } = provider.mlKemKeygen(seed);
    wipe(seed);
    pq.local = { id: pq.nextLocalId++, publicKey, secretKey };
  }
  return shared;
}

/** The header fields of a message at `counter` in the current sending chain. */
export function headerFields(pq: PqRatchetState, counter: number): PqHeaderFields {
  return {
    kemPublicKey: pq.local && counter === 0 ? { id: pq.local.id, key: pq.local.publicKey } : undefined,
    kemCiphertext: pq.sendingCiphertext,
  };
}

/**
 * The receiving half of a DH step (a message with a new ratchet key): the shared secret of its
 * ciphertext, if it carries one. A ciphertext for a key we do not hold (used already, or never
 * made) makes the message undecryptable.
 */
export function receivingSecret(provider: CryptoProvider, pq: PqRatchetState, fields: PqHeaderFields): Uint8Array | undefined {
  const c = fields.kemCiphertext;
  if (!c) return undefined;
  if (!pq.local || pq.local.id !== c.keyId) throw new DecryptionError(`KEM ciphertext for ratchet KEM key ${c.keyId}, which this session does not hold`);
  return provider.mlKemDecapsulate(c.ciphertext, pq.local.secretKey);
}

/** After a verified message: what it tells the PQ state (`stepped`: its DH step used our key). */
export function commitReceived(pq: PqRatchetState, fields: PqHeaderFields, stepped: boolean, nowMs: number | undefined): void {
  if (stepped && fields.kemCiphertext && pq.local) {
    wipe(pq.local.secretKey);
    pq.local = undefined;
    pq.sentSinceStep = 0;
    if (nowMs !== undefined) pq.lastStepMs = nowMs;
  }
  const k = fields.kemPublicKey;
  if (k && k.id > pq.remoteUsedId && (!pq.remote || k.id > pq.remote.id)) pq.remote = { id: k.id, publicKey: k.key.slice() };
}
