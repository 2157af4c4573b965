/**
 * The Messenger's local store: account settings, conversation history, the receive cursor,
 * the outbox and the trusted device lists of contacts. Sessions and keys live in the
 * protocol stores (store/interfaces.ts) next to it.
 *
 * This is the user's device: message plaintext is stored here by design (as in every
 * messenger's local database); protect it with disk encryption / OS key storage. Nothing in
 * here is ever sent to the server. Implementations: memory-conversation-store.ts (tests) and
 * record-conversation-store.ts (durable over record spaces: files on Node, IndexedDB in browsers).
 */
import { toHex } from "../crypto/bytes.js";

/** A device, by account and device id. */
export type { DeviceRef } from "../protocol/address.js";
import type { DeviceRef } from "../protocol/address.js";

/** "direct:<account>" for 1:1, "group:<hex id>" for groups. */
export type ConversationKey = string;

export function directConversation(accountId: string): ConversationKey {
  return `direct:${accountId}`;
}

/** The conversation of a group, by its id (bytes, or hex as GroupInfo.groupId has it). */
export function groupConversation(groupId: Uint8Array | string): ConversationKey {
  return `group:${typeof groupId === "string" ? groupId.toLowerCase() : toHex(groupId)}`;
}

/** The dedup key of a processed incoming message: "<sender account>.<message id hex>". */
export function seenKey(senderAccountId: string, messageIdHex: string): string {
  return `${senderAccountId}.${messageIdHex}`;
}

/** The peer account of a 1:1 conversation key, undefined for groups. */
export function directPeer(key: ConversationKey): string | undefined {
  return key.startsWith("direct:") ? key.slice("direct:".length) : undefined;
}

/** The group id (hex) of a group conversation key, undefined for 1:1 conversations. */
export function conversationGroupId(key: ConversationKey): string | undefined {
  return key.startsWith("group:") ? key.slice("group:".length) : undefined;
}

/** An attachment as the receiver needs it to download, verify and decrypt. */
export interface AttachmentInfo {
  attachmentId: string;
  /** AES-256-GCM key (secret; only ever in the local store and inside E2EE content). */
  key: Uint8Array;
  /** SHA-256 of the uploaded ciphertext. */
  digest: Uint8Array;
  size: number;
  contentType: string;
  fileName: string;
  caption: string;
  width: number;
  height: number;
}

export type MessageBody = { kind: "text"; text: string; quoteMessageId?: string } | { kind: "attachment"; attachment: AttachmentInfo };

/** Outgoing: queued -> sent -> delivered -> read (or failed). Incoming: "received". */
export type MessageStatus = "queued" | "sent" | "delivered" | "read" | "failed" | "received";

export interface StoredMessage {
  /** message_id, hex. */
  id: string;
  conversation: ConversationKey;
  sender: DeviceRef;
  outgoing: boolean;
  /** The sender's clock (Content.sent_at_ms). */
  sentAtMs: number;
  /** This device's clock when stored. */
  storedAtMs: number;
  serverTimestampMs?: number;
  body: MessageBody;
  status: MessageStatus;
  /** "<account>.<device>" of devices that sent a delivery receipt (outgoing). */
  deliveredTo: string[];
  /** "<account>.<device>" of devices that sent a read receipt (outgoing). */
  readBy: string[];
  /** Incoming: read on one of this account's devices. */
  read: boolean;
  /** Why an outgoing message failed for good. */
  failure?: string;
  /**
   * Sent or received with sealed sending: the server was not told the sender (outgoing: the
   * recipient's copies; incoming: this copy). A sync copy from another own device is not.
   */
  sealed?: boolean;
}

/** A message this device is sending, as stored before it goes out (1:1 and group alike). */
export function outgoingMessage(o: { id: string; conversation: ConversationKey; sender: DeviceRef; sentAtMs: number; body: MessageBody }): StoredMessage {
  return { ...o, outgoing: true, storedAtMs: o.sentAtMs, status: "queued", deliveredTo: [], readBy: [], read: true };
}

/** Orders history: (sent_at_ms, sender account, sender device, message_id). */
export function compareMessages(a: StoredMessage, b: StoredMessage): number {
  if (a.sentAtMs !== b.sentAtMs) return a.sentAtMs - b.sentAtMs;
  if (a.sender.accountId !== b.sender.accountId) return a.sender.accountId < b.sender.accountId ? -1 : 1;
  if (a.sender.deviceId !== b.sender.deviceId) return a.sender.deviceId - b.sender.deviceId;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Where the receive loop resumes, and acks still owed to the server. */
export interface ReceiveState {
  /** Highest mailbox sequence durably processed. */
  cursor: number;
  /** Processed sequences whose Ack has not been confirmed yet. */
  pendingAcks: number[];
}

/** One durable outgoing Send. */
export interface OutboxItem {
  /** Queue order. */
  seq: number;
  /** Fixed when queued, so every retry is deduplicated by the server. */
  messageId: Uint8Array;
  /** Serialized envelope.v1.Content. */
  content: Uint8Array;
  /** Recipient accounts (besides this account's other devices); empty: own devices only. */
  to: string[];
  /**
   * A group message (16-byte group id): the content goes once, under this device's sender
   * key, to every member device, through the group layer's sender (Outbox.setGroupSender);
   * `to` is empty.
   */
  groupId?: Uint8Array;
  /** The encrypted SendRequest once made: retries resend these exact bytes. */
  request?: Uint8Array;
  /**
   * Sealed sending: the recipient's part went out with SendSealed and was stored (request
   * then holds only the part for this account's other devices, sent with Send).
   */
  sealedStored?: { serverTimestampMs: number; devices: number };
  /** Why this item is not sent sealed (the server refused the access key); sent with Send. */
  unsealed?: string;
  /** What this is, for events ("text", "receipt", "read-sync", ...). */
  label: string;
  createdAtMs: number;
}

/** This device's settings. */
/** An import in progress, kept in the account record so a restart resumes it. */
export interface HistoryImportState {
  fromDeviceId: number;
  archive: AttachmentInfo;
  total: number;
  /** Messages of the archive (in its order) already imported. */
  imported: number;
}

export interface AccountRecord {
  accountId: string;
  deviceId: number;
  deviceName: string;
  serverUrl: string;
  createdAtMs: number;
  nextOneTimePrekeyId: number;
  signedPrekeyId: number;
  signedPrekeyCreatedAtMs: number;
  kemPrekeyId: number;
  kemPrekeyCreatedAtMs: number;
  /**
   * When each replaced signed / KEM prekey stopped being the uploaded one (set by rotation);
   * kept keys are pruned from these times, not from creation (prekey-maintenance.ts).
   */
  retiredSignedPrekeys?: RetiredPrekey[];
  retiredKemPrekeys?: RetiredPrekey[];
  /** A history transfer this (new) device is importing; resumed after a restart. */
  historyImport?: HistoryImportState;
  /** Sealed sending to this device (SetSealedAccess): created at the first start. */
  sealedAccess?: SealedAccessRecord;
}

/** This device's sealed-mail setting and access key (shared with contacts, its SHA-256 with the server). */
export interface SealedAccessRecord {
  mode: "off" | "contacts" | "anyone";
  /** 16 random bytes, hex. */
  accessKey: string;
  /** The mode the server last confirmed for this key (SetSealedAccess); differs until registered. */
  registered?: "off" | "contacts" | "anyone";
}

/** A replaced prekey id and when it was replaced. */
export interface RetiredPrekey {
  keyId: number;
  retiredAtMs: number;
}

/** A device list verified up to this version (serialized SignedDeviceList). */
export interface TrustedDeviceList {
  accountId: string;
  signed: Uint8Array;
  fetchedAtMs: number;
}

export interface ConversationStore {
  getAccount(): Promise<AccountRecord | undefined>;
  setAccount(record: AccountRecord): Promise<void>;

  getMessage(conversation: ConversationKey, id: string): Promise<StoredMessage | undefined>;
  putMessage(message: StoredMessage): Promise<void>;
  /** Every message of a conversation, ordered by compareMessages. */
  listMessages(conversation: ConversationKey): Promise<StoredMessage[]>;
  listConversations(): Promise<ConversationKey[]>;

  /** Deduplication of processed incoming message ids (any content type). */
  isSeen(key: string): Promise<boolean>;
  markSeen(key: string): Promise<void>;

  getReceiveState(): Promise<ReceiveState>;
  setReceiveState(state: ReceiveState): Promise<void>;

  /** Outbox items in queue order. */
  listOutbox(): Promise<OutboxItem[]>;
  putOutbox(item: OutboxItem): Promise<void>;
  removeOutbox(seq: number): Promise<void>;

  getTrustedList(accountId: string): Promise<TrustedDeviceList | undefined>;
  setTrustedList(list: TrustedDeviceList): Promise<void>;

  /** The access key an account last shared (Content.sender_access_key), for sealed sending to it. */
  getAccessKey(accountId: string): Promise<ContactAccessKey | undefined>;
  /** Keeps (or with `key` undefined, forgets) an account's access key. */
  setAccessKey(accountId: string, key: ContactAccessKey | undefined): Promise<void>;

  /** The key transparency log key this device trusts and the largest tree head it verified. */
  getTransparency(): Promise<TransparencyRecord | undefined>;
  setTransparency(record: TransparencyRecord): Promise<void>;
}

/** What a device keeps of the key transparency log (directory/key-transparency.ts). */
export interface TransparencyRecord {
  /** The log key seen first (Ed25519 public key): a different one later is an attack. */
  logKey: Uint8Array;
  /** The largest signed tree head verified so far. */
  treeSize: number;
  rootHash: Uint8Array;
  timestampMs: number;
  signature: Uint8Array;
  /**
   * How far this device has read the log for versions of its own account (the monitor): the
   * number of leaves read and the roots of the perfect subtrees covering them (largest first),
   * from which the next leaves extend the tree.
   */
  monitored?: { size: number; frontier: { height: number; hash: Uint8Array }[] };
}

/** An access key another account shared with this one. */
export interface ContactAccessKey {
  accountId: string;
  /** 16 bytes. */
  key: Uint8Array;
  receivedAtMs: number;
}
