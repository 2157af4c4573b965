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

export interface SessionState {
  version: 1;
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
}

/** All states of one remote device: the current one and up to MAX_PREVIOUS_SESSIONS older. */
export interface SessionRecord {
  current?: SessionState;
  previous: SessionState[];
}
