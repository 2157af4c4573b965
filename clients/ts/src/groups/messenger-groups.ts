/**
 * Groups on a Messenger: the GroupPort over the Messenger's directory, outbox and delivery
 * client, plus the app-facing group API (create, add/remove, promote/demote, settings, leave,
 * send, history, read receipts). Group messages become ordinary `message` events and stored
 * messages in the `group:<id>` conversation; group state changes are reported through
 * `on(listener)` as GroupEvents.
 *
 *   const groups = MessengerGroups.attach(messenger, createMemoryGroupStores());
 *   const g = await groups.createGroup("trip", ["bob", "carol"]);
 *   await groups.sendText(g.groupId, "hello all");
 *
 * Attach before messenger.start(), so no group content arrives without its handlers.
 */
import { create } from "@bufbuild/protobuf";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { AttachmentPointerSchema, ContentSchema, ReadMarkSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { uploadAttachment, type AttachmentMeta } from "../attachments.js";
import { groupContent } from "../protocol/group-cipher.js";
import { fromHex, toHex } from "../crypto/bytes.js";
import { DuplicateMessageError, SealpostCryptoError } from "../crypto/errors.js";
import { groupConversation, type StoredMessage } from "../conversation-store.js";
import type { Messenger } from "../messenger.js";
import type { GroupStores } from "../store/group-interfaces.js";
import type { GroupEvent, GroupMessage } from "./group-events.js";
import { GroupManager, type GroupInfo } from "./group-manager.js";
import type { GroupDeviceInfo, GroupDeviceRef, GroupPort, GroupSendOutcome } from "./group-port.js";

export interface MessengerGroupsOptions {
  /** Send delivery receipts for group messages to their author (default true). */
  autoDeliveryReceipts?: boolean;
  now?: () => number;
}

export class MessengerGroups implements GroupPort {
  readonly manager: GroupManager;
  private readonly listeners = new Set<(e: GroupEvent) => void>();
  private readonly autoDeliveryReceipts: boolean;
  private readonly now: () => number;

  private constructor(
    private readonly m: Messenger,
    stores: GroupStores,
    opts: MessengerGroupsOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.autoDeliveryReceipts = opts.autoDeliveryReceipts ?? true;
    this.manager = new GroupManager({ provider: m.provider, stores, port: this, now: this.now });
    const control = async (ctx: { sender: GroupDeviceRef; content: Content }) => {
      await this.manager.handleContent(ctx.sender, ctx.content);
    };
    m.registerContentHandler("groupControl", control);
    m.registerContentHandler("senderKeyDistribution", control);
    m.registerGroupBodyHandler((sender, mail) => this.onGroupBody(sender, mail));
  }

  /** Installs the group layer on a Messenger (before start()). */
  static attach(m: Messenger, stores: GroupStores, opts: MessengerGroupsOptions = {}): MessengerGroups {
    return new MessengerGroups(m, stores, opts);
  }

  /** Group state events (updates, removals, rejected forgeries). Returns an unsubscribe. */
  on(listener: (e: GroupEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- app API

  createGroup(title: string, members: string[], opts?: { admins?: string[]; adminsOnlyMessages?: boolean }): Promise<GroupInfo> {
    return this.manager.createGroup(title, members, opts);
  }
  addMembers(groupId: string, accounts: string[]): Promise<GroupInfo> {
    return this.manager.addMembers(groupId, accounts);
  }
  removeMember(groupId: string, accountId: string): Promise<GroupInfo> {
    return this.manager.removeMember(groupId, accountId);
  }
  promote(groupId: string, accountId: string): Promise<GroupInfo> {
    return this.manager.promote(groupId, accountId);
  }
  demote(groupId: string, accountId: string): Promise<GroupInfo> {
    return this.manager.demote(groupId, accountId);
  }
  changeSettings(groupId: string, change: { title?: string; adminsOnlyMessages?: boolean }): Promise<GroupInfo> {
    return this.manager.changeSettings(groupId, change);
  }
  leave(groupId: string): Promise<void> {
    return this.manager.leave(groupId);
  }
  info(groupId: string): Promise<GroupInfo | undefined> {
    return this.manager.info(groupId);
  }
  list(): Promise<GroupInfo[]> {
    return this.manager.list();
  }

  /** Sends a text to the group (one encryption, one Send) and stores it as outgoing. */
  async sendText(groupId: string, text: string, opts: { quoteMessageId?: string } = {}): Promise<StoredMessage> {
    const sentAtMs = this.now();
    const res = await this.manager.sendText(groupId, text, { quoteMessageId: opts.quoteMessageId ? fromHex(opts.quoteMessageId) : undefined });
    const message: StoredMessage = {
      id: toHex(res.messageId),
      conversation: groupConversation(fromHex(groupId)),
      sender: this.m.address,
      outgoing: true,
      sentAtMs,
      storedAtMs: this.now(),
      serverTimestampMs: res.serverTimestampMs,
      body: { kind: "text", text, ...(opts.quoteMessageId ? { quoteMessageId: opts.quoteMessageId } : {}) },
      status: "sent",
      deliveredTo: [],
      readBy: [],
      read: true,
    };
    await this.m.store.putMessage(message);
    return message;
  }

  /**
   * Encrypts and uploads a file (needs the server), then sends its pointer (key and digest)
   * to the group under the sender key, and stores it as outgoing.
   */
  async sendFile(groupId: string, data: Uint8Array, meta: AttachmentMeta): Promise<StoredMessage> {
    const info = await uploadAttachment(this.m.api, this.m.provider, data, meta);
    const gid = fromHex(groupId);
    const sentAtMs = this.now();
    const pointer = create(AttachmentPointerSchema, {
      attachmentId: info.attachmentId,
      key: info.key,
      ciphertextSha256: info.digest,
      size: BigInt(info.size),
      contentType: info.contentType,
      fileName: info.fileName,
      caption: info.caption,
      width: info.width,
      height: info.height,
    });
    const content = groupContent(gid, { messageId: this.m.provider.random(16), sentAtMs: BigInt(sentAtMs), body: { case: "attachment", value: pointer } });
    const res = await this.manager.sendContent(gid, content);
    const message: StoredMessage = {
      id: toHex(res.messageId),
      conversation: groupConversation(gid),
      sender: this.m.address,
      outgoing: true,
      sentAtMs,
      storedAtMs: this.now(),
      serverTimestampMs: res.serverTimestampMs,
      body: { kind: "attachment", attachment: info },
      status: "sent",
      deliveredTo: [],
      readBy: [],
      read: true,
    };
    await this.m.store.putMessage(message);
    return message;
  }

  /** The group's history from the local store. */
  history(groupId: string, opts: { limit?: number } = {}): Promise<StoredMessage[]> {
    return this.m.conversationHistory(groupConversation(fromHex(groupId)), opts);
  }

  /**
   * Marks incoming group messages read: read receipts to each author's devices, a read sync
   * to this account's other devices. Returns how many changed.
   */
  async markRead(groupId: string, messageIds?: string[]): Promise<number> {
    const conversation = groupConversation(fromHex(groupId));
    const wanted = messageIds && new Set(messageIds);
    const byAuthor = new Map<string, StoredMessage[]>();
    for (const msg of await this.m.store.listMessages(conversation)) {
      if (msg.outgoing || msg.read || (wanted && !wanted.has(msg.id))) continue;
      msg.read = true;
      await this.m.store.putMessage(msg);
      byAuthor.set(msg.sender.accountId, [...(byAuthor.get(msg.sender.accountId) ?? []), msg]);
    }
    let n = 0;
    const marks = [];
    for (const [author, msgs] of byAuthor) {
      n += msgs.length;
      for (let i = 0; i < msgs.length; i += 100) await this.manager.sendReceipt(groupId, author, "read", msgs.slice(i, i + 100).map((x) => fromHex(x.id)));
      for (const x of msgs) marks.push(create(ReadMarkSchema, { conversation: { kind: { case: "groupId", value: fromHex(groupId) } }, senderAccountId: author, messageId: fromHex(x.id) }));
    }
    if (marks.length > 0) {
      await this.m.sendContent(create(ContentSchema, { conversation: { kind: { case: "groupId", value: fromHex(groupId) } }, body: { case: "sync", value: { kind: { case: "read", value: { marks } } } } }), [], "read-sync");
    }
    return n;
  }

  // ---------------------------------------------------------------- GroupPort

  get self(): GroupDeviceRef {
    return this.m.address;
  }

  async signingSeed(): Promise<Uint8Array> {
    const local = await this.m.protocol.identity.getLocalIdentity();
    if (!local) throw new Error("no local identity");
    return local.signingSeed;
  }

  async devices(accountId: string, opts: { refresh?: boolean } = {}): Promise<GroupDeviceInfo[]> {
    const list = await this.m.directory.devices(accountId, opts);
    return list.devices.map((d) => ({ deviceId: d.deviceId, signingKey: d.signingKey }));
  }

  /**
   * Through the outbox (sessions, bundles, retries). State changes and sender keys wait until
   * stored, so a group body sent next reaches each mailbox after them; receipts do not wait.
   */
  async sendPairwise(content: Content, accounts: string[]): Promise<void> {
    const kind = content.body.case;
    const label = kind === "groupControl" ? "group-control" : kind === "senderKeyDistribution" ? "sender-key" : kind === "receipt" ? "group-receipt" : "group";
    await this.m.sendContent(content, accounts, label);
    if (kind === "groupControl" || kind === "senderKeyDistribution") await this.m.flush();
  }

  async sendGroupBody(messageId: Uint8Array, sharedBody: Uint8Array, devices: GroupDeviceRef[]): Promise<GroupSendOutcome> {
    const versions = [];
    for (const accountId of new Set(devices.map((d) => d.accountId))) {
      const known = await this.m.directory.known(accountId);
      if (known) versions.push({ accountId, deviceListVersion: known.version });
    }
    const res = await this.m.api.delivery.send({ messageId, sharedBody, entries: devices.map((d) => ({ device: d, entry: new Uint8Array(0) })), versions });
    if (res.outcome.case === "stored") return { stored: true, serverTimestampMs: Number(res.outcome.value.serverTimestampMs) };
    if (res.outcome.case === "mismatchedDevices") return { stored: false, mismatchedAccounts: res.outcome.value.accounts.map((a) => a.accountId) };
    throw new Error("Send answered without an outcome");
  }

  async received(g: GroupMessage): Promise<void> {
    const c = g.content;
    const conversation = groupConversation(fromHex(g.groupId));
    const id = toHex(g.messageId);
    if (c.body.case !== "text" && c.body.case !== "attachment") return;
    if (await this.m.store.getMessage(conversation, id)) return;
    const fromSelf = g.sender.accountId === this.m.accountId;
    const body: StoredMessage["body"] =
      c.body.case === "text"
        ? { kind: "text", text: c.body.value.body, ...(c.body.value.quoteMessageId.length ? { quoteMessageId: toHex(c.body.value.quoteMessageId) } : {}) }
        : {
            kind: "attachment",
            attachment: {
              attachmentId: c.body.value.attachmentId,
              key: c.body.value.key,
              digest: c.body.value.ciphertextSha256,
              size: Number(c.body.value.size),
              contentType: c.body.value.contentType,
              fileName: c.body.value.fileName,
              caption: c.body.value.caption,
              width: c.body.value.width,
              height: c.body.value.height,
            },
          };
    const message: StoredMessage = {
      id,
      conversation,
      sender: g.sender,
      outgoing: fromSelf,
      sentAtMs: Number(c.sentAtMs),
      storedAtMs: this.now(),
      serverTimestampMs: g.serverTimestampMs,
      body,
      status: fromSelf ? "sent" : "received",
      deliveredTo: [],
      readBy: [],
      read: fromSelf,
    };
    await this.m.store.putMessage(message);
    this.m.emitEvent({ type: "message", message });
    if (!fromSelf && this.autoDeliveryReceipts) await this.manager.sendReceipt(g.groupId, g.sender.accountId, "delivered", [g.messageId]);
  }

  emit(e: GroupEvent): void {
    for (const l of this.listeners) l(e);
  }

  // ---------------------------------------------------------------- receiving

  private async onGroupBody(sender: GroupDeviceRef, mail: MailboxMessage): Promise<void> {
    try {
      await this.manager.handleGroupBody(sender, mail.messageId, mail.sharedBody, Number(mail.serverTimestampMs));
    } catch (err) {
      // Forged, replayed or malformed: drop it (a duplicate silently), as the pairwise path does.
      if (!(err instanceof SealpostCryptoError)) throw err;
      if (!(err instanceof DuplicateMessageError)) {
        this.m.emitEvent({ type: "session-problem", from: sender, problem: "undecryptable", detail: `group message: ${err.name}: ${err.message}` });
      }
    }
  }
}
