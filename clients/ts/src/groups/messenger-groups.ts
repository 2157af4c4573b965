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
 * Outgoing group messages go through the Messenger's durable outbox, in a lane of their own
 * per group: sendText stores the message as "queued", tries it at once when the Messenger is
 * running and keeps retrying (with backoff, and again whenever the connection comes back)
 * until the server stored it for every member device; every retry keeps the message_id, so
 * the server never stores it twice. Key distributions a send needs go out from inside it
 * (sendNow), never behind it in the queue.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { ContentSchema, ReadMarkSchema, TextSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { decodeSignedGroupState } from "../protocol/group-state.js";
import { attachmentPointer, type AttachmentMeta } from "../transport/attachments.js";
import { groupContent } from "../protocol/group-cipher.js";
import { fromHex, toHex } from "../crypto/bytes.js";
import { DuplicateMessageError, SealpostCryptoError } from "../crypto/errors.js";
import { groupConversation, outgoingMessage, type OutboxItem, type StoredMessage } from "../store/conversation-store.js";
import { arrivedMessage, messageBodyOf } from "../messenger/direct-contents.js";
import type { GroupHost, Messenger } from "../messenger/messenger.js";
import { messengerErrorOf } from "../core/messenger-errors.js";
import type { GroupOutboxStore, GroupStores } from "../store/group-interfaces.js";
import { GroupDirectoryError, GroupError, GroupUpdatePendingError } from "./group-errors.js";
import type { GroupEvent, GroupMessage } from "./group-events.js";
import { GroupManager, type GroupInfo } from "./group-manager.js";
import type { GroupDeviceInfo, DeviceRef, GroupPort, GroupSendOutcome } from "./group-port.js";

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
  /** Everything this layer uses of its device beyond the Messenger's public API. */
  private readonly host: GroupHost;

  private constructor(
    private readonly m: Messenger,
    stores: GroupStores,
    opts: MessengerGroupsOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.autoDeliveryReceipts = opts.autoDeliveryReceipts ?? true;
    this.host = m.groupHost();
    this.manager = new GroupManager({ provider: m.provider, stores, port: this, now: this.now });
    const control = async (ctx: { sender: DeviceRef; content: Content }) => {
      await this.manager.handleContent(ctx.sender, ctx.content);
    };
    m.registerContentHandler("groupControl", control);
    m.registerContentHandler("senderKeyDistribution", control);
    m.registerGroupBodyHandler((sender, mail) => this.onGroupBody(sender, mail));
    // History transfer: the current state of each group goes to a new device of this
    // account, which verifies it as any state from that device (first seen: signed by an
    // admin's current device, listing this account).
    m.registerHistoryGroups({
      export: async () => {
        const out: Uint8Array[] = [];
        for (const id of await stores.groups.ids()) {
          const r = await stores.groups.load(id);
          if (r?.active) out.push(r.signedState);
        }
        return out;
      },
      import: async (states, from) => {
        for (const bytes of states) {
          let signed: ReturnType<typeof decodeSignedGroupState>;
          try {
            signed = decodeSignedGroupState(bytes);
          } catch {
            continue; // not a state: skipped (the archive was checked, this is defence in depth)
          }
          const content = create(ContentSchema, { body: { case: "groupControl", value: { kind: { case: "update", value: signed } } } });
          await this.manager.handleContent(from, content);
        }
      },
    });
    this.host.setGroupSender((item) => this.sendQueued(item));
    m.on((e) => {
      if (e.type === "connection" && e.state === "online") {
        this.manager.retryPending().catch(() => undefined); // what fails stays queued, retried on a timer
      }
    });
  }

  /**
   * Moves group messages an earlier version queued in its own group outbox
   * (GroupStores.outbox) into the Messenger's outbox, same message ids, in order.
   */
  private async adoptLegacyOutbox(legacy: GroupOutboxStore): Promise<void> {
    for (const item of await legacy.list()) {
      await this.host.queueGroupMessage(item.groupId, fromBinary(ContentSchema, item.content));
      await legacy.remove(item.seq);
    }
  }

  /** The group sender of the Messenger's outbox: one group item, under the sender key. */
  private async sendQueued(item: OutboxItem): Promise<{ serverTimestampMs: number; devices: number } | { refused: Error }> {
    if (!item.groupId) throw new Error("not a group item");
    try {
      return await this.manager.sendContent(item.groupId, fromBinary(ContentSchema, item.content));
    } catch (err) {
      if (err instanceof GroupError) return { refused: err }; // not a member, admins only, ...: never retried
      // A change of the group waits for its signer's device list, which could not be fetched:
      // the directory is unavailable for now, so the item waits as for any outage.
      if (err instanceof GroupUpdatePendingError) throw new ConnectError(err.message, Code.Unavailable, undefined, undefined, err);
      throw err;
    }
  }

  /** Installs the group layer on a Messenger (before start()). */
  static attach(m: Messenger, stores: GroupStores, opts: MessengerGroupsOptions = {}): MessengerGroups {
    const groups = new MessengerGroups(m, stores, opts);
    if (stores.outbox) {
      const legacy = stores.outbox;
      groups.adopting = groups.adoptLegacyOutbox(legacy).catch((err) => {
        m.emitEvent({ type: "send-retry", messageId: "", label: "group", reason: `group messages queued by an earlier version stay queued: ${String(err)}` });
      });
    }
    return groups;
  }

  /** The move of an earlier version's group outbox, while it runs. */
  private adopting?: Promise<void>;

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
    return this.queue(
      groupId,
      { case: "text", value: create(TextSchema, { body: text, quoteMessageId: quote }) },
      { kind: "text", text, ...(opts.quoteMessageId ? { quoteMessageId: opts.quoteMessageId } : {}) },
    );
  }

  /**
   * Encrypts and uploads a file (needs the server), then sends its pointer (key and digest)
   * to the group under the sender key, like sendText.
   */
  async sendFile(groupId: string, data: Uint8Array, meta: AttachmentMeta): Promise<StoredMessage> {
    await this.manager.checkCanSend(groupId);
    const info = await this.host.upload(data, meta);
    const pointer = attachmentPointer(info);
    return this.queue(groupId, { case: "attachment", value: pointer }, { kind: "attachment", attachment: info });
  }

  /** Resolves once the outbox is empty (everything queued reached the server or failed). */
  async flush(): Promise<void> {
    await this.adopting;
    await this.host.flush();
  }

  private async queue(groupId: string, body: Content["body"], stored: StoredMessage["body"]): Promise<StoredMessage> {
    await this.manager.checkCanSend(groupId);
    const gid = fromHex(groupId);
    const sentAtMs = this.now();
    const messageId = this.host.random(16);
    const content = groupContent(gid, { messageId, sentAtMs: BigInt(sentAtMs), body });
    const conversation = groupConversation(gid);
    const message = outgoingMessage({ id: toHex(messageId), conversation, sender: this.host.self, sentAtMs, body: stored });
    await this.host.messages.put(message);
    const { attempted } = await this.host.queueGroupMessage(gid, content);
    if (this.host.isRunning()) {
      const failure = await attempted;
      if (failure instanceof GroupError) throw failure;
    }
    return (await this.host.messages.get(conversation, message.id)) ?? message;
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
    for (const msg of await this.host.messages.list(conversation)) {
      if (msg.outgoing || msg.read || (wanted && !wanted.has(msg.id))) continue;
      msg.read = true;
      await this.host.messages.put(msg);
      byAuthor.set(msg.sender.accountId, [...(byAuthor.get(msg.sender.accountId) ?? []), msg]);
    }
    let n = 0;
    const marks = [];
    for (const [author, msgs] of byAuthor) {
      n += msgs.length;
      for (let i = 0; i < msgs.length; i += 100)
        await this.manager.sendReceipt(
          groupId,
          author,
          "read",
          msgs.slice(i, i + 100).map((x) => fromHex(x.id)),
        );
      for (const x of msgs)
        marks.push(
          create(ReadMarkSchema, { conversation: { kind: { case: "groupId", value: fromHex(groupId) } }, senderAccountId: author, messageId: fromHex(x.id) }),
        );
    }
    if (marks.length > 0) {
      await this.host.sendContent(
        create(ContentSchema, {
          conversation: { kind: { case: "groupId", value: fromHex(groupId) } },
          body: { case: "sync", value: { kind: { case: "read", value: { marks } } } },
        }),
        [],
        "read-sync",
      );
    }
    return n;
  }

  // ---------------------------------------------------------------- GroupPort

  get self(): DeviceRef {
    return this.host.self;
  }

  signingSeed(): Promise<Uint8Array> {
    return this.host.signingSeed();
  }

  async devices(accountId: string, opts: { refresh?: boolean } = {}): Promise<GroupDeviceInfo[]> {
    let list: Awaited<ReturnType<typeof this.host.devices>>;
    try {
      list = await this.host.devices(accountId, opts);
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
  async sendPairwise(content: Content, accounts: string[], opts: { direct?: boolean } = {}): Promise<void> {
    if (opts.direct) return this.host.sendNow(content, accounts);
    const kind = content.body.case;
    const label = kind === "groupControl" ? "group-control" : kind === "senderKeyDistribution" ? "sender-key" : kind === "receipt" ? "group-receipt" : "group";
    const item = await this.host.sendContent(content, accounts, label);
    // State and keys must be stored before the group mail that needs them: wait for this
    // item only, not behind unrelated 1:1 mail.
    if (kind === "groupControl" || kind === "senderKeyDistribution") await this.host.settled(item);
  }

  async sendGroupBody(messageId: Uint8Array, sharedBody: Uint8Array, devices: DeviceRef[]): Promise<GroupSendOutcome> {
    const res = await this.host.sendSharedBody(messageId, sharedBody, devices);
    if (res.outcome.case === "stored") return { stored: true, serverTimestampMs: Number(res.outcome.value.serverTimestampMs) };
    if (res.outcome.case === "mismatchedDevices") return { stored: false, mismatchedAccounts: res.outcome.value.accounts.map((a) => a.accountId) };
    throw new Error("Send answered without an outcome");
  }

  async received(g: GroupMessage): Promise<void> {
    const c = g.content;
    const conversation = groupConversation(fromHex(g.groupId));
    const id = toHex(g.messageId);
    const body = messageBodyOf(c);
    if (!body) return;
    if (await this.host.messages.get(conversation, id)) return;
    const fromSelf = g.sender.accountId === this.host.self.accountId;
    const message = arrivedMessage({
      id,
      conversation,
      sender: g.sender,
      fromSelf,
      sentAtMs: c.sentAtMs,
      storedAtMs: this.now(),
      serverTimestampMs: g.serverTimestampMs,
      body,
    });
    await this.host.messages.put(message);
    this.host.emit({ type: "message", message });
    if (!fromSelf && this.autoDeliveryReceipts) await this.manager.sendReceipt(g.groupId, g.sender.accountId, "delivered", [g.messageId]);
  }

  emit(e: GroupEvent): void {
    for (const l of this.listeners) l(e);
  }

  // ---------------------------------------------------------------- receiving

  private async onGroupBody(sender: DeviceRef, mail: MailboxMessage): Promise<void> {
    try {
      await this.manager.handleGroupBody(sender, mail.messageId, mail.sharedBody, Number(mail.serverTimestampMs));
    } catch (err) {
      // Forged, replayed or malformed: drop it (a duplicate silently), as the pairwise path does.
      if (!(err instanceof SealpostCryptoError)) throw err;
      if (!(err instanceof DuplicateMessageError)) {
        this.host.emit({ type: "session-problem", from: sender, problem: "undecryptable", detail: `group message: ${err.name}: ${err.message}` });
      }
    }
  }
}
