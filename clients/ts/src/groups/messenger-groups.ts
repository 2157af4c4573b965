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
 *
 * Outgoing group messages go through a durable group outbox (GroupStores.outbox): sendText
 * stores the message as "queued", tries it at once when the Messenger is running and keeps
 * retrying (with backoff, and again whenever the connection comes back) until the server
 * stored it for every member device; every retry keeps the message_id, so the server never
 * stores it twice.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { ContentSchema, ReadMarkSchema, TextSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { attachmentInfoOf, attachmentPointer, uploadAttachment, type AttachmentMeta } from "../attachments.js";
import { groupContent } from "../protocol/group-cipher.js";
import { fromHex, toHex } from "../crypto/bytes.js";
import { DuplicateMessageError, SealpostCryptoError } from "../crypto/errors.js";
import { sleep } from "../backoff.js";
import { groupConversation, type StoredMessage } from "../conversation-store.js";
import type { Messenger } from "../messenger.js";
import { messengerErrorOf } from "../messenger-errors.js";
import type { GroupOutboxItem, GroupOutboxStore, GroupStores } from "../store/group-interfaces.js";
import { MemoryGroupOutboxStore } from "../store/group-memory-store.js";
import { GroupDirectoryError, GroupError } from "./group-errors.js";
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
  private readonly outbox: GroupOutboxStore;
  private nextSeq?: number;
  private draining?: Promise<void>;
  /** sendText callers waiting for the first attempt of their item (by seq). */
  private readonly firstAttempt = new Map<number, (outcome: unknown) => void>();
  private readonly idleWaiters: (() => void)[] = [];

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
    this.outbox = stores.outbox ?? new MemoryGroupOutboxStore();
    m.on((e) => {
      if (e.type === "connection" && e.state === "online") {
        this.kick();
        this.manager.retryPending().catch(() => undefined); // what fails stays queued, retried on a timer
      }
    });
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

  /**
   * Sends a text to the group (one encryption, one Send to every member device) through the
   * group outbox. Resolves with the stored message after the first attempt ("sent", or still
   * "queued" when the server was unreachable: retried later); throws GroupError when this
   * device may not send to the group (then nothing is queued).
   */
  async sendText(groupId: string, text: string, opts: { quoteMessageId?: string } = {}): Promise<StoredMessage> {
    const quote = opts.quoteMessageId ? fromHex(opts.quoteMessageId) : new Uint8Array(0);
    return this.queue(groupId, { case: "text", value: create(TextSchema, { body: text, quoteMessageId: quote }) }, { kind: "text", text, ...(opts.quoteMessageId ? { quoteMessageId: opts.quoteMessageId } : {}) });
  }

  /**
   * Encrypts and uploads a file (needs the server), then sends its pointer (key and digest)
   * to the group under the sender key, like sendText.
   */
  async sendFile(groupId: string, data: Uint8Array, meta: AttachmentMeta): Promise<StoredMessage> {
    await this.manager.checkCanSend(groupId);
    const info = await uploadAttachment(this.m.api, this.m.provider, data, meta);
    const pointer = attachmentPointer(info);
    return this.queue(groupId, { case: "attachment", value: pointer }, { kind: "attachment", attachment: info });
  }

  /** Resolves once the group outbox is empty (everything queued reached the server or failed). */
  async flush(): Promise<void> {
    for (;;) {
      if ((await this.outbox.list()).length === 0) return;
      this.kick();
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
  }

  private async queue(groupId: string, body: Content["body"], stored: StoredMessage["body"]): Promise<StoredMessage> {
    await this.manager.checkCanSend(groupId);
    const gid = fromHex(groupId);
    const sentAtMs = this.now();
    const messageId = this.m.provider.random(16);
    const content = groupContent(gid, { messageId, sentAtMs: BigInt(sentAtMs), body });
    const conversation = groupConversation(gid);
    const message: StoredMessage = {
      id: toHex(messageId),
      conversation,
      sender: this.m.address,
      outgoing: true,
      sentAtMs,
      storedAtMs: sentAtMs,
      body: stored,
      status: "queued",
      deliveredTo: [],
      readBy: [],
      read: true,
    };
    await this.m.store.putMessage(message);
    if (this.nextSeq === undefined) this.nextSeq = ((await this.outbox.list()).at(-1)?.seq ?? 0) + 1;
    const item: GroupOutboxItem = { seq: this.nextSeq++, messageId, groupId: gid, content: toBinary(ContentSchema, content), createdAtMs: sentAtMs };
    await this.outbox.put(item);
    if (this.m.isRunning) {
      const outcome = await new Promise<unknown>((resolve) => {
        this.firstAttempt.set(item.seq, resolve);
        this.kick();
      });
      if (outcome instanceof GroupError) throw outcome;
    }
    return (await this.m.store.getMessage(conversation, message.id)) ?? message;
  }

  /** Starts draining the outbox unless it is running already (or the Messenger is offline). */
  private kick(): void {
    if (this.draining || !this.m.isRunning) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  private async drain(): Promise<void> {
    let delay = 250;
    for (;;) {
      if (!this.m.isRunning) return; // resumed by the next "online" event or send
      const [item] = await this.outbox.list();
      if (!item) return;
      const done = this.firstAttempt.get(item.seq);
      this.firstAttempt.delete(item.seq);
      const conversation = groupConversation(item.groupId);
      const id = toHex(item.messageId);
      try {
        const res = await this.manager.sendContent(item.groupId, fromBinary(ContentSchema, item.content));
        const m = await this.m.store.getMessage(conversation, id);
        if (m && m.status === "queued") {
          m.status = "sent";
          m.serverTimestampMs = res.serverTimestampMs;
          await this.m.store.putMessage(m);
        }
        await this.outbox.remove(item.seq);
        this.m.emitEvent({ type: "sent", messageId: id, label: "group", conversation, serverTimestampMs: res.serverTimestampMs, devices: res.devices });
        done?.(undefined);
        delay = 250;
      } catch (err) {
        if (err instanceof GroupError || err instanceof SealpostCryptoError) {
          // Permanent: no longer a member, admins only, ... Never retried.
          const m = await this.m.store.getMessage(conversation, id);
          if (m) {
            m.status = "failed";
            m.failure = err.message;
            await this.m.store.putMessage(m);
          }
          await this.outbox.remove(item.seq);
          this.m.emitEvent({ type: "send-failed", messageId: id, label: "group", reason: err.message });
          done?.(err);
          continue;
        }
        // Transient (server unreachable, ...): keep it queued and try again later.
        done?.(undefined);
        if (!this.m.isRunning) return;
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      }
    }
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
    let list;
    try {
      list = await this.m.directory.devices(accountId, opts);
    } catch (err) {
      // Untrusted or unknown: a verdict. Anything else (network, server) is transient.
      if (messengerErrorOf(err)?.code === "directory_untrusted" || (err instanceof ConnectError && err.code === Code.NotFound)) {
        throw new GroupDirectoryError(accountId, `device list of ${accountId} is untrusted or unknown`, { cause: err });
      }
      throw err;
    }
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
    const res = await this.m.api.channel.send({ messageId, sharedBody, entries: devices.map((d) => ({ device: d, entry: new Uint8Array(0) })), versions });
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
        : { kind: "attachment", attachment: attachmentInfoOf(c.body.value) };
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
