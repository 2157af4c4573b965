/**
 * The 1:1 content handlers of a device: messages and attachments (stored and announced),
 * receipts (delivered/read state of outgoing messages), typing, and sync from this account's
 * other devices (sent copies, read state, history archives). Group contents plug in beside
 * these through Messenger.registerContentHandler.
 */
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { ReceiptType, type Content, type HistoryArchive } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { fromHex, toHex } from "../crypto/bytes.js";
import { addressKey, type DeviceRef } from "../protocol/address.js";
import { attachmentInfoOf } from "../transport/attachments.js";
import type { ContentCase, ContentContext, ContentHandler } from "../delivery/mail-pipeline.js";
import {
  directConversation,
  groupConversation,
  type ConversationKey,
  type ConversationStore,
  type MessageBody,
  type StoredMessage,
} from "../store/conversation-store.js";
import type { MessengerEvent, ReceiveProblem } from "../core/events.js";

/** Message ids per receipt (the receiver reads no more of one). */
export const MAX_RECEIPT_IDS = 100;

/** The conversation a content belongs to, from the point of view of a device of `selfAccountId`. */
export function conversationOf(content: Content, sender: DeviceRef, selfAccountId: string): ConversationKey {
  const c = content.conversation?.kind;
  if (c?.case === "groupId") return groupConversation(c.value);
  // A contact's 1:1 message belongs to the conversation with its (authenticated) sender;
  // a copy from this account's other device names the peer it was sent to.
  if (sender.accountId !== selfAccountId) return directConversation(sender.accountId);
  return directConversation(c?.case === "accountId" ? c.value : sender.accountId);
}

/** The stored body of a text or attachment content; undefined for any other content. */
export function messageBodyOf(content: Content): MessageBody | undefined {
  if (content.body.case === "text") {
    const q = content.body.value.quoteMessageId;
    return { kind: "text", text: content.body.value.body, ...(q.length ? { quoteMessageId: toHex(q) } : {}) };
  }
  if (content.body.case === "attachment") return { kind: "attachment", attachment: attachmentInfoOf(content.body.value) };
  return undefined;
}

/** A message that arrived (from a contact, or a copy from this account's other device), as stored. */
export function arrivedMessage(o: {
  id: string;
  conversation: ConversationKey;
  sender: DeviceRef;
  fromSelf: boolean;
  sentAtMs: bigint;
  storedAtMs: number;
  serverTimestampMs: number;
  body: MessageBody;
  /** It came as sealed mail. */
  sealed?: boolean;
}): StoredMessage {
  return {
    id: o.id,
    conversation: o.conversation,
    sender: o.sender,
    outgoing: o.fromSelf,
    sentAtMs: Number(o.sentAtMs),
    storedAtMs: o.storedAtMs,
    serverTimestampMs: o.serverTimestampMs,
    body: o.body,
    status: o.fromSelf ? "sent" : "received",
    ...(o.sealed ? { sealed: true } : {}),
    deliveredTo: [],
    readBy: [],
    read: o.fromSelf,
  };
}

export interface DirectContentsDeps {
  accountId: string;
  store: ConversationStore;
  now(): number;
  emit(e: MessengerEvent): void;
  receiveProblem(problem: ReceiveProblem, m: MailboxMessage, from: DeviceRef, detail: string): void;
  /** Delivery receipts for incoming messages (off: the app sends none). */
  autoDeliveryReceipts: boolean;
  queueReceipt(peer: string, type: ReceiptType, messageIds: Uint8Array[]): Promise<unknown>;
  /** Whether an account is a member of a group, once the group layer installed its check. */
  groupMembership(): ((groupId: Uint8Array, accountId: string) => Promise<boolean>) | undefined;
  historyReceived(pointer: HistoryArchive, fromDeviceId: number): Promise<void>;
}

export class DirectContents {
  constructor(private readonly d: DirectContentsDeps) {}

  /** The handlers by Content.body case. */
  handlers(): [ContentCase, ContentHandler][] {
    return [
      ["text", (ctx) => this.onMessage(ctx)],
      ["attachment", (ctx) => this.onMessage(ctx)],
      ["receipt", (ctx) => this.onReceipt(ctx)],
      ["typing", (ctx) => this.onTyping(ctx)],
      ["sync", (ctx) => this.onSync(ctx)],
    ];
  }

  private conversationOf(content: Content, sender: DeviceRef): ConversationKey {
    return conversationOf(content, sender, this.d.accountId);
  }

  /**
   * Pairwise (1:1) content naming a group conversation: real group messages arrive as
   * sender-key bodies, so a pairwise text, attachment or typing indicator for a group is a
   * forgery attempt by a non-member or a broken client. Reported (no plaintext), dropped.
   */
  private groupViolation(ctx: ContentContext, content: Content): boolean {
    if (content.conversation?.kind.case !== "groupId") return false;
    this.d.receiveProblem("protocol-violation", ctx.mail, ctx.sender, `a pairwise ${content.body.case ?? "empty"} content names a group conversation`);
    return true;
  }

  private async onMessage(ctx: ContentContext, contentOverride?: Content): Promise<void> {
    const content = contentOverride ?? ctx.content;
    if (this.groupViolation(ctx, content)) return;
    const id = toHex(content.messageId.length ? content.messageId : ctx.decrypted.messageId);
    const conversation = this.conversationOf(content, ctx.sender);
    if (await this.d.store.getMessage(conversation, id)) return;
    const body = messageBodyOf(content);
    if (!body) return;
    const message = arrivedMessage({
      id,
      conversation,
      sender: ctx.sender,
      fromSelf: ctx.fromSelf,
      sentAtMs: content.sentAtMs,
      storedAtMs: this.d.now(),
      serverTimestampMs: Number(ctx.mail.serverTimestampMs),
      body,
      sealed: ctx.mail.sealed,
    });
    await this.d.store.putMessage(message);
    this.d.emit({ type: "message", message });
    if (!ctx.fromSelf && this.d.autoDeliveryReceipts) {
      await this.d.queueReceipt(ctx.sender.accountId, ReceiptType.DELIVERED, [fromHex(id)]);
    }
  }

  private async onReceipt(ctx: ContentContext): Promise<void> {
    // This account's own receipts reach its other devices too (every Send does); read state
    // between own devices travels as ReadSync instead.
    if (ctx.fromSelf || ctx.content.body.case !== "receipt") return;
    const r = ctx.content.body.value;
    const kind = r.type === ReceiptType.READ ? "read" : r.type === ReceiptType.DELIVERED ? "delivered" : undefined;
    if (!kind) return;
    const c = ctx.content.conversation?.kind;
    // Without a check installed (no group layer yet), a group receipt can still only mark
    // this device's own outgoing messages of that group (below), as before.
    const isMember = this.d.groupMembership();
    if (c?.case === "groupId" && isMember && !(await isMember(c.value, ctx.sender.accountId))) {
      this.d.receiveProblem("protocol-violation", ctx.mail, ctx.sender, "a receipt names a group the sender is not known to be a member of");
      return;
    }
    const conversation = this.conversationOf(ctx.content, ctx.sender);
    const from = addressKey(ctx.sender);
    const ids: string[] = [];
    for (const raw of r.messageIds.slice(0, MAX_RECEIPT_IDS)) {
      const id = toHex(raw);
      ids.push(id);
      const m = await this.d.store.getMessage(conversation, id);
      if (!m?.outgoing) continue;
      const list = kind === "read" ? m.readBy : m.deliveredTo;
      if (!list.includes(from)) list.push(from);
      if (kind === "read" && !m.deliveredTo.includes(from)) m.deliveredTo.push(from);
      m.status = m.readBy.length > 0 ? "read" : m.deliveredTo.length > 0 ? "delivered" : m.status;
      await this.d.store.putMessage(m);
    }
    this.d.emit({ type: "receipt", receipt: kind, conversation, from: ctx.sender, messageIds: ids });
  }

  private async onTyping(ctx: ContentContext): Promise<void> {
    if (ctx.fromSelf || ctx.content.body.case !== "typing") return;
    if (this.groupViolation(ctx, ctx.content)) return;
    this.d.emit({ type: "typing", conversation: this.conversationOf(ctx.content, ctx.sender), from: ctx.sender, started: ctx.content.body.value.started });
  }

  private async onSync(ctx: ContentContext): Promise<void> {
    // Only this account's devices may speak for it.
    if (!ctx.fromSelf || ctx.content.body.case !== "sync") return;
    const kind = ctx.content.body.value.kind;
    if (kind.case === "sent" && kind.value.content) {
      await this.onMessage(ctx, kind.value.content);
    } else if (kind.case === "history") {
      await this.d.historyReceived(kind.value, ctx.sender.deviceId);
    } else if (kind.case === "read") {
      const done: { conversation: ConversationKey; messageId: string }[] = [];
      for (const mark of kind.value.marks) {
        const c = mark.conversation?.kind;
        const conversation = c?.case === "groupId" ? groupConversation(c.value) : directConversation(c?.case === "accountId" ? c.value : mark.senderAccountId);
        const id = toHex(mark.messageId);
        const m = await this.d.store.getMessage(conversation, id);
        if (m && !m.read) {
          m.read = true;
          await this.d.store.putMessage(m);
        }
        done.push({ conversation, messageId: id });
      }
      this.d.emit({ type: "read-sync", from: ctx.sender, messages: done });
    }
  }
}
