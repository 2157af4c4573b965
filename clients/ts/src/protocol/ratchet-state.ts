/**
 * The Double Ratchet state of one session, as plain data (Uint8Array, numbers, arrays) so a
 * store can persist it as JSON. Field names follow the spec's (DHs, DHr, RK, CKs, CKr, Ns,
 * Nr, PN, MKSKIPPED); docs/PROTOCOL.md, "Double Ratchet".
 */

/** A message key kept for a message that has not arrived yet. */
export interface SkippedKey {
  ratchetKey: Uint8Array;
  counter: number;
  messageKey: Uint8Array;
}

/** What the initiator repeats in every message until the responder has answered. */
export interface PendingPrekey {
  signedPrekeyId: number;
  oneTimePrekeyId?: number;
  kemPrekeyId: number;
  baseKey: Uint8Array;
  kemCiphertext: Uint8Array;
}

/** The post-quantum ratchet's part of a version 2 session (pq-ratchet.ts). */
export interface PqRatchetState {
  /** Our ratchet KEM key pair (ML-KEM-768) the peer has not used yet; advertised on the first message of each sending chain. */
  local?: { id: number; publicKey: Uint8Array; secretKey: Uint8Array };
  /** The id our next ratchet KEM key gets (1, 2, ...). */
  nextLocalId: number;
  /** The peer's newest advertised key we have not encapsulated to yet. */
  remote?: { id: number; publicKey: Uint8Array };
  /** The highest peer key id we have encapsulated to: adverts up to it are old news. */
  remoteUsedId: number;
  /** The ciphertext the current sending chain's root step mixed in (carried by each of its messages). */
  sendingCiphertext?: { keyId: number; ciphertext: Uint8Array };
  /** Messages sent since the peer last used a key of ours (or the session began), and when that was. */
  sentSinceStep: number;
  lastStepMs: number;
}

export interface SessionState {
  /** 1: the classical Double Ratchet; 2: with the post-quantum ratchet (`pq`). */
  version: 1 | 2;
  /** Our X25519 identity public key and the peer's (the AD binds both). */
  localIdentityKey: Uint8Array;
  remoteIdentityKey: Uint8Array;
  /** The initiator's base key: identifies the session (replayed prekey messages find it). */
  baseKey: Uint8Array;
  initiator: boolean;
  /** RK */
  rootKey: Uint8Array;
  /** DHs (private, public) */
  sendingRatchetPrivate: Uint8Array;
  sendingRatchetKey: Uint8Array;
  /** CKs; undefined until the first send after a receiving DH step (sending half is lazy). */
  sendingChainKey?: Uint8Array;
  /** Ns */
  sendingCounter: number;
  /** PN */
  previousCounter: number;
  /** DHr */
  receivingRatchetKey?: Uint8Array;
  /** CKr */
  receivingChainKey?: Uint8Array;
  /** Nr */
  receivingCounter: number;
  /** Ratchet keys of earlier receiving chains, newest first (duplicate reporting only). */
  oldRatchetKeys: Uint8Array[];
  /** MKSKIPPED, oldest first. */
  skipped: SkippedKey[];
  pendingPrekey?: PendingPrekey;
  createdAtMs: number;
  /** Version 2 only. */
  pq?: PqRatchetState;
}

/** All states of one remote device: the current one and up to MAX_PREVIOUS_SESSIONS older. */
export interface SessionRecord {
  current?: SessionState;
  previous: SessionState[];
}
