/**
 * Storage interfaces, one per record kind (as libsignal's stores). Crypto and protocol code
 * only sees these; implementations: store/memory-store.ts (tests, benchmarks) and
 * store/file-store.ts (durable), which depend on protocol/, never the other way round. Addresses are keyed as "<account_id>.<device_id>" (addressKey).
 *
 * Ownership: a record passed to save() belongs to the store; a record returned by load() may
 * be mutated by the caller only to save it back (the session cipher does exactly that, and
 * only after a message authenticated).
 */
import type { OwnSenderKey, SenderKeyRecord } from "./sender-keys.js";
import type { LocalIdentity, RemoteIdentity } from "./identity.js";
import type { KemPrekeyRecord, X25519PrekeyRecord } from "./prekeys.js";
import type { SessionRecord } from "./ratchet-state.js";
import type { ChannelReceiveState } from "./channel.js";

/** Result of recording a remote identity. */
export type IdentityChange = "new" | "unchanged" | "changed";

export interface IdentityStore {
  getLocalIdentity(): Promise<LocalIdentity | undefined>;
  setLocalIdentity(identity: LocalIdentity): Promise<void>;
  getRemoteIdentity(address: string): Promise<RemoteIdentity | undefined>;
  /** Records the identity from a verified device list; reports whether it changed. */
  saveRemoteIdentity(address: string, identity: RemoteIdentity): Promise<IdentityChange>;
  /** Forgets a remote identity (its device left the account's verified list). */
  removeRemoteIdentity(address: string): Promise<void>;
}

/** Records keyed by a numeric key id. */
export interface KeyRecordStore<R> {
  load(keyId: number): Promise<R | undefined>;
  save(keyId: number, record: R): Promise<void>;
  remove(keyId: number): Promise<void>;
  /** Ids currently stored, ascending. */
  ids(): Promise<number[]>;
}

/** One-time X25519 prekeys; each is removed when a session consumed it. */
export type OneTimePrekeyStore = KeyRecordStore<X25519PrekeyRecord>;
/** Signed X25519 prekeys (kept a while after rotation for late prekey messages). */
export type SignedPrekeyStore = KeyRecordStore<X25519PrekeyRecord>;
/** Signed ML-KEM-768 prekeys (last-resort, reused until rotated). */
export type KemPrekeyStore = KeyRecordStore<KemPrekeyRecord>;

export interface SessionStore {
  load(address: string): Promise<SessionRecord | undefined>;
  save(address: string, record: SessionRecord): Promise<void>;
  remove(address: string): Promise<void>;
}

/** Channel sequence counters: what we sent last to a device and what we received from it. */
export interface ChannelStore {
  /** The last channel_sequence sent to `address` (0 when none). */
  loadSent(address: string): Promise<number>;
  saveSent(address: string, sequence: number): Promise<void>;
  loadReceived(address: string): Promise<ChannelReceiveState | undefined>;
  saveReceived(address: string, state: ChannelReceiveState): Promise<void>;
}

/** Everything the session cipher needs. */
export interface ProtocolStores {
  identity: IdentityStore;
  oneTimePrekeys: OneTimePrekeyStore;
  signedPrekeys: SignedPrekeyStore;
  kemPrekeys: KemPrekeyStore;
  sessions: SessionStore;
  channels: ChannelStore;
}

/**
 * Sender keys. Receiving records by sender device (addressKey) and distribution id (hex);
 * this device's own sending key by group id (hex).
 */
export interface SenderKeyStore {
  load(sender: string, distributionId: string): Promise<SenderKeyRecord | undefined>;
  save(sender: string, distributionId: string, record: SenderKeyRecord): Promise<void>;
  remove(sender: string, distributionId: string): Promise<void>;
  loadOwn(groupId: string): Promise<OwnSenderKey | undefined>;
  saveOwn(groupId: string, key: OwnSenderKey): Promise<void>;
  removeOwn(groupId: string): Promise<void>;
}
