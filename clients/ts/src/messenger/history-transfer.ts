/**
 * History transfer (docs/PROTOCOL.md, "History transfer"): an existing device, with the
 * user's consent, packs this account's conversations into an archive for one newly linked
 * device; the archive travels as an encrypted attachment whose key and digest reach the new
 * device only inside an end-to-end encrypted sync message; the new device checks, imports
 * and keeps receiving. Never included: keys of any kind (identity, prekeys, sessions, sender
 * keys), the outbox, receipts state of other devices beyond what the messages record.
 *
 * Archive: JSON in the store's encoding (json-codec: bytes as {"$b": base64}), at most
 * MAX_ARCHIVE_MESSAGES messages:
 *   { format: "sealpost.history.v1", accountId, fromDeviceId, createdAtMs, sinceMs,
 *     messages: StoredMessage[] (ordered by compareMessages),
 *     groups: SignedGroupState bytes[] (the current state of every group this account is in) }
 */
import { create } from "@bufbuild/protobuf";
import { HistoryArchiveSchema, type HistoryArchive as HistoryArchivePointer } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { attachmentInfoOf, attachmentPointer } from "../transport/attachments.js";
import { sleep } from "../util/backoff.js";
import { unrefTimer } from "../util/timers.js";
import type { DeviceRef } from "../protocol/address.js";
import type { AccountRecord, AttachmentInfo, ConversationStore, HistoryImportState, StoredMessage } from "../store/conversation-store.js";
import { compareMessages, seenKey } from "../store/conversation-store.js";
import type { MessengerEvent } from "../core/events.js";
import { MessengerError } from "../core/messenger-errors.js";
import { isTransient } from "../transport/failure-kinds.js";
import { decodeRecord, encodeRecord } from "../store/json-codec.js";

export const HISTORY_FORMAT = "sealpost.history.v1";
export const HISTORY_CONTENT_TYPE = "application/vnd.sealpost.history+json";
/** Bounds what one archive holds (and what a device agrees to import). */
export const MAX_ARCHIVE_MESSAGES = 200_000;
/** Groups one archive may carry. */
export const MAX_ARCHIVE_GROUPS = 10_000;
/** Progress is saved (and reported) every this many imported messages. */
export const IMPORT_BATCH = 500;

export interface HistoryArchive {
  format: typeof HISTORY_FORMAT;
  accountId: string;
  fromDeviceId: number;
  createdAtMs: number;
  /** Messages sent at or after this (0: all). */
  sinceMs: number;
  messages: StoredMessage[];
  /** Serialized SignedGroupState of each group the account is in (absent: none). */
  groups?: Uint8Array[];
}

/** Every message of the store sent at or after `sinceMs`, ordered, as archive bytes. */
export async function buildHistoryArchive(
  store: ConversationStore,
  o: { accountId: string; fromDeviceId: number; sinceMs: number; nowMs: number; groups?: Uint8Array[] },
): Promise<{ bytes: Uint8Array; count: number }> {
  const messages: StoredMessage[] = [];
  for (const c of await store.listConversations()) {
    for (const m of await store.listMessages(c)) if (m.sentAtMs >= o.sinceMs) messages.push(m);
  }
  if (messages.length > MAX_ARCHIVE_MESSAGES) messages.splice(0, messages.length - MAX_ARCHIVE_MESSAGES); // the newest
  messages.sort(compareMessages);
  const archive: HistoryArchive = {
    format: HISTORY_FORMAT,
    accountId: o.accountId,
    fromDeviceId: o.fromDeviceId,
    createdAtMs: o.nowMs,
    sinceMs: o.sinceMs,
    messages,
    groups: o.groups ?? [],
  };
  return { bytes: new TextEncoder().encode(encodeRecord(archive)), count: messages.length };
}

const bad = (why: string) => new MessengerError("attachment_corrupt", `history archive refused: ${why}`);
const ID = /^[0-9a-f]{32}$/;

/** Parses and checks an archive for `accountId` (after its digest and AEAD checked out). */
export function parseHistoryArchive(bytes: Uint8Array, accountId: string, expectedCount: number): HistoryArchive {
  let a: HistoryArchive;
  try {
    a = decodeRecord<HistoryArchive>(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw bad("not a history archive");
  }
  if (!a || a.format !== HISTORY_FORMAT) throw bad(`unknown format ${JSON.stringify(a?.format)}`);
  if (a.accountId !== accountId) throw bad(`it is for account ${JSON.stringify(a.accountId)}`);
  if (!Array.isArray(a.messages) || a.messages.length > MAX_ARCHIVE_MESSAGES) throw bad("no message list, or too many messages");
  if (a.messages.length !== expectedCount) throw bad(`it holds ${a.messages.length} messages, the sync message said ${expectedCount}`);
  for (const m of a.messages) {
    const ok =
      m &&
      typeof m.id === "string" &&
      ID.test(m.id) &&
      typeof m.conversation === "string" &&
      /^(direct:.+|group:[0-9a-f]{32})$/.test(m.conversation) &&
      typeof m.sentAtMs === "number" &&
      m.sender &&
      typeof m.sender.accountId === "string" &&
      typeof m.sender.deviceId === "number" &&
      m.body &&
      (m.body.kind === "text" ? typeof m.body.text === "string" : m.body.kind === "attachment" && m.body.attachment?.key instanceof Uint8Array);
    if (!ok) throw bad("a message record is malformed");
  }
  if (a.groups !== undefined && (!Array.isArray(a.groups) || a.groups.length > MAX_ARCHIVE_GROUPS || a.groups.some((g) => !(g instanceof Uint8Array))))
    throw bad("the group list is malformed");
  return a;
}

/**
 * Imports messages from `state.imported` on, skipping ones the store has (so a resumed or
 * repeated import adds nothing twice and never overwrites what this device has itself).
 * Incoming messages are marked seen, so the same message arriving later is not shown again.
 */
export async function importHistory(
  store: ConversationStore,
  archive: HistoryArchive,
  state: HistoryImportState,
  progress: (imported: number) => Promise<void>,
): Promise<number> {
  let added = 0;
  for (let i = state.imported; i < archive.messages.length; i++) {
    const m = archive.messages[i];
    if (!(await store.getMessage(m.conversation, m.id))) {
      await store.putMessage(m);
      added++;
    }
    if (!m.outgoing) await store.markSeen(seenKey(m.sender.accountId, m.id));
    if ((i + 1) % IMPORT_BATCH === 0 || i + 1 === archive.messages.length) await progress(i + 1);
  }
  return added;
}

/** What a history transfer needs from its device (the Messenger provides it). */
export interface HistoryHost {
  accountId: string;
  deviceId: number;
  store: ConversationStore;
  /** The account record (it holds an import in progress) and saving it. */
  account(): AccountRecord;
  saveAccount(): Promise<void>;
  now(): number;
  /** Whether the device is online (a failed download is retried only then). */
  running(): boolean;
  emit(e: MessengerEvent): void;
  /** Whether another device of the account can be sent to yet (it uploaded its prekeys). */
  reachable(deviceId: number): Promise<"yes" | "no" | "unlisted">;
  upload(bytes: Uint8Array): Promise<AttachmentInfo>;
  download(info: AttachmentInfo): Promise<Uint8Array>;
  /** Queues the sync message to this account's own devices; its message id (hex). */
  sendToOwnDevices(history: HistoryArchivePointer): Promise<string>;
  /** The group layer's part: current group states to send, and applying received ones (verified as any state is). */
  exportGroups(): Promise<Uint8Array[]>;
  importGroups(states: Uint8Array[], from: DeviceRef): Promise<void>;
}

type SenderPhase = "waiting" | "uploading" | "sent";
type ReceiverPhase = "downloading" | "importing" | "done" | "failed";

export class HistoryTransfer {
  private importing: Promise<void> | undefined;

  constructor(private readonly h: HistoryHost) {}

  /**
   * Waits until `deviceId` is reachable, packs every message sent at or after `sinceMs` (0:
   * all), uploads the archive encrypted and queues the sync message carrying its key to
   * that device only.
   */
  async send(deviceId: number, opts: { sinceMs?: number; waitMs?: number } = {}): Promise<{ messageId: string; messages: number; bytes: number }> {
    if (deviceId === this.h.deviceId) throw new MessengerError("unknown_device", "history goes to another device of this account, not to this one");
    const emit = (phase: SenderPhase, done: number, total: number) => this.h.emit({ type: "history-transfer", role: "sender", phase, done, total });
    // Reachable once it uploaded prekeys (a device without them is left out of every Send).
    const deadline = this.h.now() + (opts.waitMs ?? 120_000);
    emit("waiting", 0, 0);
    for (;;) {
      const r = await this.h.reachable(deviceId);
      if (r === "unlisted") throw new MessengerError("unknown_device", `device ${deviceId} is not in this account's device list`);
      if (r === "yes") break;
      if (this.h.now() > deadline) throw new MessengerError("unknown_device", `device ${deviceId} did not become reachable (no prekeys uploaded) in time`);
      await sleep(500);
    }
    const { bytes, count } = await buildHistoryArchive(this.h.store, {
      accountId: this.h.accountId,
      fromDeviceId: this.h.deviceId,
      sinceMs: opts.sinceMs ?? 0,
      nowMs: this.h.now(),
      groups: await this.h.exportGroups(),
    });
    emit("uploading", 0, count);
    const info = await this.h.upload(bytes);
    const messageId = await this.h.sendToOwnDevices(create(HistoryArchiveSchema, { deviceId, archive: attachmentPointer(info), messageCount: count }));
    emit("sent", count, count);
    return { messageId, messages: count, bytes: bytes.length };
  }

  /** A HistoryArchive sync message from device `fromDeviceId` of this account. */
  async received(p: HistoryArchivePointer, fromDeviceId: number): Promise<void> {
    if (p.deviceId !== this.h.deviceId || !p.archive) return; // for another new device
    const account = this.h.account();
    if (account.historyImport?.archive.attachmentId === p.archive.attachmentId) return; // already on it
    account.historyImport = { fromDeviceId, archive: attachmentInfoOf(p.archive), total: p.messageCount, imported: 0 };
    await this.h.saveAccount();
    // In the background: the receive loop goes on meanwhile.
    this.resume();
  }

  /** Goes on with an import a restart interrupted (no-op when there is none). */
  resume(): void {
    if (!this.h.account().historyImport) return;
    this.importing ??= this.importNow().finally(() => (this.importing = undefined));
  }

  private async importNow(): Promise<void> {
    const account = this.h.account();
    const state = account.historyImport;
    if (!state) return;
    const emit = (phase: ReceiverPhase, done: number, detail?: string) =>
      this.h.emit({ type: "history-transfer", role: "receiver", phase, done, total: state.total, ...(detail ? { detail } : {}) });
    let archive: HistoryArchive;
    try {
      emit("downloading", state.imported);
      // Checks the digest (the pointer came end-to-end encrypted) and the AEAD: a changed byte is refused.
      archive = parseHistoryArchive(await this.h.download(state.archive), this.h.accountId, state.total);
    } catch (err) {
      if (isTransient(err) && this.h.running()) {
        // Server unreachable: try again shortly (and at the next start).
        unrefTimer(setTimeout(() => this.resume(), 5_000));
        return;
      }
      account.historyImport = undefined;
      await this.h.saveAccount();
      emit("failed", state.imported, err instanceof Error ? err.message : String(err));
      return;
    }
    try {
      await importHistory(this.h.store, archive, state, async (n) => {
        state.imported = n;
        await this.h.saveAccount();
        emit("importing", n);
      });
    } catch (err) {
      // A local failure (disk): the progress so far is saved; the next start goes on from it.
      emit("failed", state.imported, `${err instanceof Error ? err.message : String(err)}; resumes at the next start`);
      return;
    }
    // Groups last: each state is verified by the group layer as if it had arrived from that device.
    if (archive.groups?.length) await this.h.importGroups(archive.groups, { accountId: this.h.accountId, deviceId: state.fromDeviceId });
    account.historyImport = undefined;
    await this.h.saveAccount();
    emit("done", state.total);
  }
}
