/**
 * Storage interfaces of the group layer (sender keys, group state), kept apart from
 * interfaces.ts (the pairwise protocol's) so each layer owns its records. Implementations:
 * group-memory-store.ts and group-file-store.ts. Ownership rules as in interfaces.ts: a
 * record returned by load() may be mutated by the caller only to save it back.
 */
import type { SenderKeyStore } from "../protocol/stores.js";
import type { DeviceRef } from "../protocol/address.js";

/** What a device keeps about one group (plain data: JSON-able). */
export interface GroupRecord {
  groupId: Uint8Array;
  /** Serialized SignedGroupState of the current (accepted) version. */
  signedState: Uint8Array;
  /** Serialized SignedGroupState of the version before, when known (fork choice). */
  previousSignedState?: Uint8Array;
  /** Remote sender devices (addressKey) -> their distribution ids (hex) we hold, newest first. */
  senderKeys: Record<string, string[]>;
  /** Devices (addressKey) that hold our current sending key. */
  distributedTo: string[];
  /** Accounts that sent GroupLeave and await an admin's removal: excluded from sends. */
  departed: string[];
  /** False once this account left or was removed. */
  active: boolean;
  updatedAtMs: number;
}

export interface GroupStateStore {
  load(groupId: string): Promise<GroupRecord | undefined>;
  save(groupId: string, record: GroupRecord): Promise<void>;
  remove(groupId: string): Promise<void>;
  /** Group ids (hex) stored. */
  ids(): Promise<string[]>;
}

/**
 * Group content that arrived before what it depends on (a group message before its sender
 * key, a sender key before the state that adds its sender, a state that skips a version),
 * serialized, so it survives a restart after the mailbox message was acknowledged. One record
 * per item: `id` orders them (oldest first) and names the record.
 */
export type GroupPendingItem = { id: number } & (
  | { kind: "body"; sender: DeviceRef; messageId: Uint8Array; sharedBody: Uint8Array; serverTimestampMs: number }
  /** Serialized SenderKeyDistribution. */
  | { kind: "distribution"; sender: DeviceRef; distribution: Uint8Array }
  /** Serialized SignedGroupState. */
  | { kind: "update"; from: DeviceRef; signed: Uint8Array }
);

/** The single-record format of earlier versions (read once by file stores, then converted). */
export interface GroupPendingSnapshot {
  bodies: { sender: DeviceRef; messageId: Uint8Array; sharedBody: Uint8Array; serverTimestampMs: number }[];
  distributions: { sender: DeviceRef; distribution: Uint8Array }[];
  updates: { from: DeviceRef; signed: Uint8Array }[];
}

export interface GroupPendingStore {
  /** Every item, oldest (lowest id) first. */
  list(): Promise<GroupPendingItem[]>;
  put(item: GroupPendingItem): Promise<void>;
  remove(id: number): Promise<void>;
}

/** One group message an earlier version queued in its own group outbox (now the Messenger's outbox). */
export interface GroupOutboxItem {
  /** Queue order. */
  seq: number;
  messageId: Uint8Array;
  groupId: Uint8Array;
  /** Serialized envelope.v1.Content (message_id set, conversation = the group). */
  content: Uint8Array;
  createdAtMs: number;
}

export interface GroupOutboxStore {
  /** Items in queue order. */
  list(): Promise<GroupOutboxItem[]>;
  put(item: GroupOutboxItem): Promise<void>;
  remove(seq: number): Promise<void>;
}

/** Everything the group layer stores. */
export interface GroupStores {
  senderKeys: SenderKeyStore;
  groups: GroupStateStore;
  /** Waiting content; without it the queues live in memory only. */
  pending?: GroupPendingStore;
  /**
   * Group messages queued by an earlier version, which kept a group outbox of its own:
   * MessengerGroups.attach moves them into the Messenger's outbox (same message ids).
   */
  outbox?: GroupOutboxStore;
}

export type { SenderKeyStore };
