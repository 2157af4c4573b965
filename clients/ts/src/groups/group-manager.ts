/**
 * GroupManager: groups end to end on top of the protocol layer (docs/PROTOCOL.md, "Groups").
 *
 * - State: a signed, versioned GroupState chain per group (protocol/group-state.ts). Admins
 *   publish changes as GroupControl.update over the pairwise sessions; every device verifies
 *   each change against the version it holds and rejects the rest.
 * - Messages: one sender-key encryption per message (protocol/group-cipher.ts), sent once with
 *   an empty entry per member device. Before each send the sender makes sure every current
 *   member device holds its key, and **rotates** first when any device that holds the current
 *   key is no longer a recipient (member removed or left, device revoked): one rule covers
 *   all three cases, and it is checked against fresh device lists on every send.
 * - Receiving: distributions are accepted from devices of current members only; group
 *   messages only from current (not departed) members, admins when admins_only_messages.
 *   Distributions and messages that arrive before what they depend on (the state that adds
 *   their sender, the distribution of their key) wait in bounded, persisted queues
 *   (waiting-content.ts); so do changes whose signer's device list could not be fetched.
 *
 * This file holds the app-facing API, sending and group messages in; state changes received
 * are group-state-sync.ts, record helpers group-records.ts. No transport here: everything
 * goes through a GroupPort.
 */
import { create } from "@bufbuild/protobuf";
import { ContentSchema, ReceiptSchema, ReceiptType, TextSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { GroupRole, type SenderKeyDistribution } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { bytesEqual, fromHex, toHex } from "../crypto/bytes.js";
import { InvalidMessageError, SealpostCryptoError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { GroupCipher, groupContent } from "../protocol/group-cipher.js";
import { GROUP_ID_BYTES, MAX_SENDER_DISTRIBUTIONS } from "../protocol/group-labels.js";
import {
  applyGroupChange,
  diffGroupStates,
  encodeGroupState,
  encodeSignedGroupState,
  GroupChangeError,
  GroupStateError,
  isAdmin,
  roleOf,
  signGroupState,
  verifyGenesis,
  verifyGroupStateUpdate,
  type GroupChange,
  type VerifiedGroupState,
} from "../protocol/group-state.js";
import { parseSenderKeyBody, validateDistribution, validateSenderKeyMessage } from "../protocol/sender-keys.js";
import type { GroupRecord, GroupStores } from "../store/group-interfaces.js";
import { addressKey } from "../protocol/address.js";
import { GroupError, GroupUpdatePendingError } from "./group-errors.js";
import type { DeviceRef, GroupPort } from "./group-port.js";
import { KeyedLock } from "../util/keyed-lock.js";
import { GroupStateSync } from "./group-state-sync.js";
import { WaitingContent, type PendingBody } from "./waiting-content.js";
import { controlContent, currentOf, deactivate, emptyState, hexId, others, toInfo, type GroupInfo } from "./group-records.js";

export type { GroupInfo };

export interface GroupManagerOptions {
  provider: CryptoProvider;
  stores: GroupStores;
  port: GroupPort;
  now?: () => number;
  /** Max items per waiting queue (distributions, messages, updates); the oldest are dropped. */
  maxPending?: number;
  /** Max items in all waiting queues together (default 5,000); the oldest overall are dropped. */
  maxPendingTotal?: number;
  /** Max bytes in all waiting queues together (default 32 MiB); the oldest overall are dropped. */
  maxPendingBytes?: number;
  /**
   * First delay before state changes held back by a transient directory failure are verified
   * again (doubles up to 5 minutes; default 1 s). They are also retried before each send to
   * their group, when a later change of the group arrives, and on retryPending().
   */
  retryDelayMs?: number;
}

const MAX_SEND_ATTEMPTS = 4;
const MESSAGE_ID_BYTES = 16;

export class GroupManager {
  readonly cipher: GroupCipher;
  private readonly provider: CryptoProvider;
  private readonly stores: GroupStores;
  private readonly port: GroupPort;
  private readonly now: () => number;
  private readonly locks = new KeyedLock();
  private readonly waiting: WaitingContent;
  private readonly sync: GroupStateSync;

  constructor(o: GroupManagerOptions) {
    this.provider = o.provider;
    this.stores = o.stores;
    this.port = o.port;
    this.now = o.now ?? Date.now;
    this.cipher = new GroupCipher(o.provider, o.stores.senderKeys, { now: this.now });
    this.waiting = new WaitingContent({
      limits: { perKey: o.maxPending ?? 500, items: o.maxPendingTotal ?? 5000, bytes: o.maxPendingBytes ?? 32 * 1024 * 1024 },
      store: o.stores.pending,
      emit: (e) => this.port.emit(e),
      onRestoredUpdate: (groupId) => this.sync.deferRestored(groupId),
    });
    this.sync = new GroupStateSync({
      provider: o.provider,
      stores: o.stores,
      port: o.port,
      cipher: this.cipher,
      now: this.now,
      locks: this.locks,
      waiting: this.waiting,
      retryDelayMs: o.retryDelayMs ?? 1000,
      publish: (groupId, change) => this.publish(groupId, change),
      handleDistribution: (from, dist) => this.handleDistribution(from, dist),
    });
  }

  private get self(): DeviceRef {
    return this.port.self;
  }

  private withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(key, fn);
  }

  // ---------------------------------------------------------------- queries

  /** The group, or undefined when this device does not know it. */
  async info(groupId: string | Uint8Array): Promise<GroupInfo | undefined> {
    const record = await this.stores.groups.load(hexId(groupId));
    return record && toInfo(record, currentOf(this.provider, record));
  }

  /** Every group this device knows. */
  async list(): Promise<GroupInfo[]> {
    const out: GroupInfo[] = [];
    for (const id of await this.stores.groups.ids()) {
      const info = await this.info(id);
      if (info) out.push(info);
    }
    return out;
  }

  // ---------------------------------------------------------------- admin API

  /** Creates a group with this account as its admin (plus `admins`) and sends version 1 to every member. */
  async createGroup(title: string, members: string[], opts: { admins?: string[]; adminsOnlyMessages?: boolean } = {}): Promise<GroupInfo> {
    const me = this.self.accountId;
    const accounts = new Set([me, ...members, ...(opts.admins ?? [])]);
    const admins = new Set([me, ...(opts.admins ?? [])]);
    const groupId = this.provider.random(GROUP_ID_BYTES);
    let bytes: Uint8Array;
    try {
      bytes = encodeGroupState({
        groupId,
        version: 1n,
        title,
        members: [...accounts].map((accountId) => ({ accountId, role: admins.has(accountId) ? GroupRole.ADMIN : GroupRole.MEMBER })),
        previousHash: new Uint8Array(0),
        adminsOnlyMessages: opts.adminsOnlyMessages ?? false,
      });
    } catch (e) {
      throw new GroupError("invalid_change", e instanceof Error ? e.message : String(e), { cause: e });
    }
    const signed = await signGroupState(this.provider, bytes, this.self, await this.port.signingSeed());
    const verified = await verifyGenesis(this.provider, signed, await this.sync.lookupFor([me]));
    const record: GroupRecord = {
      groupId,
      signedState: encodeSignedGroupState(signed),
      senderKeys: {},
      distributedTo: [],
      departed: [],
      active: true,
      updatedAtMs: this.now(),
    };
    await this.stores.groups.save(toHex(groupId), record);
    await this.port.sendPairwise(controlContent(groupId, { case: "update", value: signed }, this.now()), others(accounts, me));
    this.port.emit({
      type: "group-updated",
      groupId: toHex(groupId),
      version: 1,
      signer: this.self,
      diff: diffGroupStates(emptyState(), verified.state),
      joined: true,
    });
    return toInfo(record, verified);
  }

  addMembers(groupId: string | Uint8Array, accounts: string[]): Promise<GroupInfo> {
    return this.publish(groupId, { add: accounts });
  }

  removeMember(groupId: string | Uint8Array, accountId: string): Promise<GroupInfo> {
    return this.publish(groupId, { remove: [accountId] });
  }

  promote(groupId: string | Uint8Array, accountId: string): Promise<GroupInfo> {
    return this.publish(groupId, { promote: [accountId] });
  }

  demote(groupId: string | Uint8Array, accountId: string): Promise<GroupInfo> {
    return this.publish(groupId, { demote: [accountId] });
  }

  /** Title and settings (admins only). */
  changeSettings(groupId: string | Uint8Array, change: { title?: string; adminsOnlyMessages?: boolean }): Promise<GroupInfo> {
    return this.publish(groupId, change);
  }

  /**
   * Signs version N+1 with `change`, applies it here and sends it to every member of N and
   * N+1 (removed members learn they were removed). Throws GroupError("not_admin") when this
   * account is not an admin of N: members would reject the change anyway.
   */
  async publish(groupId: string | Uint8Array, change: GroupChange): Promise<GroupInfo> {
    const id = hexId(groupId);
    const { verified, recipients } = await this.withLock(id, async () => {
      const record = await this.requireActive(id);
      const current = currentOf(this.provider, record);
      if (!isAdmin(current.state, this.self.accountId)) throw new GroupError("not_admin", "only admins change the group");
      let bytes: Uint8Array;
      try {
        bytes = applyGroupChange(current, change);
      } catch (e) {
        if (e instanceof GroupChangeError || e instanceof GroupStateError) throw new GroupError("invalid_change", e.message, { cause: e });
        throw e;
      }
      const signed = await signGroupState(this.provider, bytes, this.self, await this.port.signingSeed());
      const next = await verifyGroupStateUpdate(this.provider, current, signed, await this.sync.lookupFor([this.self.accountId]));
      await this.sync.accept(record, current, next, this.self);
      this.sync.recordOwnChange(id, next.hash, change);
      const all = new Set([...current.state.members, ...next.state.members].map((m) => m.accountId));
      return { verified: next, recipients: others(all, this.self.accountId) };
    });
    await this.port.sendPairwise(controlContent(verified.state.groupId, { case: "update", value: verified.signed }, this.now()), recipients);
    const record = await this.stores.groups.load(id);
    return toInfo(record!, verified);
  }

  /**
   * Leaves the group. An admin publishes the state without itself (promoting the first other
   * member when it is the last admin); a member sends GroupLeave to every member device and
   * an admin publishes the removal.
   */
  async leave(groupId: string | Uint8Array): Promise<void> {
    const id = hexId(groupId);
    const record = await this.requireActive(id);
    const current = currentOf(this.provider, record);
    const me = this.self.accountId;
    const rest = current.state.members.filter((m) => m.accountId !== me);
    if (rest.length === 0) {
      await deactivate(this.cipher, this.stores, id, this.now());
      return;
    }
    if (isAdmin(current.state, me)) {
      const promote = rest.some((m) => m.role === GroupRole.ADMIN) ? [] : [rest[0].accountId];
      await this.publish(id, { remove: [me], promote });
      return;
    }
    await this.port.sendPairwise(
      controlContent(current.state.groupId, { case: "leave", value: { groupId: current.state.groupId } }, this.now()),
      rest.map((m) => m.accountId),
    );
    await deactivate(this.cipher, this.stores, id, this.now());
    this.port.emit({ type: "group-left", groupId: id });
  }

  // ---------------------------------------------------------------- sending

  /** Sends a text to the group: one encryption, one Send to every member device. */
  sendText(
    groupId: string | Uint8Array,
    text: string,
    opts: { quoteMessageId?: Uint8Array; messageId?: Uint8Array } = {},
  ): Promise<{ messageId: Uint8Array; serverTimestampMs: number; devices: number }> {
    const gid = fromHex(hexId(groupId));
    const messageId = opts.messageId ?? this.provider.random(16);
    const content = groupContent(gid, {
      messageId,
      sentAtMs: BigInt(this.now()),
      body: { case: "text", value: create(TextSchema, { body: text, quoteMessageId: opts.quoteMessageId ?? new Uint8Array(0) }) },
    });
    return this.sendContent(gid, content);
  }

  /**
   * Sends group content (its conversation is the group, its message_id set) under this
   * device's sender key. Distributes the key to member devices that lack it and rotates it
   * first when a device holding it is no longer a recipient. Retries with refreshed device
   * lists when the server reports mismatched devices.
   */
  async sendContent(groupId: Uint8Array, content: Content): Promise<{ messageId: Uint8Array; serverTimestampMs: number; devices: number }> {
    if (content.messageId.length !== 16) throw new InvalidMessageError("group content needs a 16-byte message_id");
    const id = toHex(groupId);
    if (this.sync.isDeferred(id)) {
      // A state change (maybe a removal) could not be verified yet: verify it before sending.
      await this.sync.retryPending();
      if (this.sync.isDeferred(id)) throw new GroupUpdatePendingError("a change of the group waits for its signer's device list; retry later");
    }
    let refresh = new Set<string>();
    for (let attempt = 1; attempt <= MAX_SEND_ATTEMPTS; attempt++) {
      const outcome = await this.withLock(id, async () => {
        const record = await this.requireActive(id);
        const current = currentOf(this.provider, record);
        const me = this.self.accountId;
        if (roleOf(current.state, me) === undefined) throw new GroupError("not_member", "this account is not a member");
        if (current.state.adminsOnlyMessages && !isAdmin(current.state, me)) throw new GroupError("admins_only", "only admins may send in this group");
        const devices = await this.recipientDevices(record, current, refresh);
        await this.ensureDistributed(record, current, devices);
        const { sharedBody } = await this.cipher.encrypt(groupId, content);
        return { res: await this.port.sendGroupBody(content.messageId, sharedBody, devices), devices: devices.length };
      });
      if (outcome.res.stored) return { messageId: content.messageId, serverTimestampMs: outcome.res.serverTimestampMs, devices: outcome.devices };
      refresh = new Set(outcome.res.mismatchedAccounts);
    }
    throw new GroupError("send_failed", "device lists kept changing; group message not sent");
  }

  /** A delivery or read receipt for group messages, sent pairwise to their author's devices. */
  async sendReceipt(groupId: string | Uint8Array, authorAccountId: string, type: "delivered" | "read", messageIds: Uint8Array[]): Promise<void> {
    const gid = fromHex(hexId(groupId));
    const content = create(ContentSchema, {
      sentAtMs: BigInt(this.now()),
      conversation: { kind: { case: "groupId", value: gid } },
      body: { case: "receipt", value: create(ReceiptSchema, { type: type === "read" ? ReceiptType.READ : ReceiptType.DELIVERED, messageIds }) },
    });
    await this.port.sendPairwise(content, authorAccountId === this.self.accountId ? [] : [authorAccountId]);
  }

  /** Throws GroupError when this device may not send to the group now (unknown, left, admins only). */
  async checkCanSend(groupId: string | Uint8Array): Promise<void> {
    const record = await this.requireActive(hexId(groupId));
    const state = currentOf(this.provider, record).state;
    const me = this.self.accountId;
    if (roleOf(state, me) === undefined) throw new GroupError("not_member", "this account is not a member");
    if (state.adminsOnlyMessages && !isAdmin(state, me)) throw new GroupError("admins_only", "only admins may send in this group");
  }

  /** Every current device of every member not departed, and this account's other devices. */
  private async recipientDevices(record: GroupRecord, current: VerifiedGroupState, refresh: Set<string>): Promise<DeviceRef[]> {
    const out: DeviceRef[] = [];
    for (const m of current.state.members) {
      if (record.departed.includes(m.accountId)) continue;
      const list = await this.port.devices(m.accountId, { refresh: refresh.has(m.accountId) });
      for (const d of list) {
        if (m.accountId === this.self.accountId && d.deviceId === this.self.deviceId) continue;
        out.push({ accountId: m.accountId, deviceId: d.deviceId });
      }
    }
    return out;
  }

  /** Rotation rule, then distribution of the current key to devices that lack it. */
  private async ensureDistributed(record: GroupRecord, current: VerifiedGroupState, devices: DeviceRef[]): Promise<void> {
    const id = toHex(record.groupId);
    const now = new Set(devices.map(addressKey));
    const hasKey = await this.cipher.hasOwnKey(record.groupId);
    if (hasKey && record.distributedTo.some((k) => !now.has(k))) {
      // A device that can derive our chain is gone (removed, left, revoked): a new key.
      await this.cipher.rotate(record.groupId);
      record.distributedTo = [];
    }
    const missing = devices.filter((d) => !record.distributedTo.includes(addressKey(d)));
    if (missing.length === 0 && hasKey) return;
    const accounts = others(new Set(missing.map((d) => d.accountId)), this.self.accountId);
    const dist = await this.cipher.distribution(record.groupId);
    if (missing.length > 0) {
      // New devices may not know the group yet: the current state first, then the key.
      // Direct: this runs inside a queued group send, which these must not wait behind.
      await this.port.sendPairwise(controlContent(record.groupId, { case: "update", value: current.signed }, this.now()), accounts, { direct: true });
      await this.port.sendPairwise(
        groupContent(record.groupId, { sentAtMs: BigInt(this.now()), body: { case: "senderKeyDistribution", value: dist } }),
        accounts,
        { direct: true },
      );
    }
    record.distributedTo = [...new Set([...record.distributedTo.filter((k) => now.has(k)), ...devices.map(addressKey)])];
    record.updatedAtMs = this.now();
    await this.stores.groups.save(id, record);
  }

  // ---------------------------------------------------------------- receiving

  /**
   * Handles group_control and sender_key_distribution content that arrived over a pairwise
   * session from `sender`. Returns false for any other content (the caller handles it).
   */
  async handleContent(sender: DeviceRef, content: Content): Promise<boolean> {
    const b = content.body;
    if (b.case !== "groupControl" && b.case !== "senderKeyDistribution") return false;
    await this.waiting.restore();
    try {
      return await this.dispatchContent(sender, content);
    } finally {
      await this.waiting.persist();
    }
  }

  private async dispatchContent(sender: DeviceRef, content: Content): Promise<boolean> {
    const b = content.body;
    if (b.case === "groupControl") {
      const k = b.value.kind;
      if (k.case === "update") await this.sync.handleUpdate(sender, k.value);
      else if (k.case === "leave") await this.sync.handleLeave(sender, k.value.groupId);
      return true;
    }
    if (b.case === "senderKeyDistribution") {
      await this.handleDistribution(sender, b.value);
      return true;
    }
    return false;
  }

  /**
   * Handles a sender-key body (Send with an empty entry) from `sender`. The decrypted message
   * goes to port.received; a message whose distribution has not arrived yet waits for it.
   * Throws SealpostCryptoError for bodies that fail (forged, duplicate, too far ahead).
   */
  async handleGroupBody(sender: DeviceRef, messageId: Uint8Array, sharedBody: Uint8Array, serverTimestampMs: number): Promise<void> {
    const message = parseSenderKeyBody(sharedBody);
    if (!message) throw new InvalidMessageError("shared body is not a sender-key message");
    // Wire fields that become store keys are checked before any store is touched.
    validateSenderKeyMessage(message);
    if (messageId.length !== MESSAGE_ID_BYTES) throw new InvalidMessageError("group message_id must be 16 bytes");
    await this.waiting.restore();
    const groupId = await this.cipher.groupOf(sender, message);
    if (!groupId) {
      this.waiting.queues.push(
        "bodies",
        `${addressKey(sender)}/${toHex(message.distributionId)}`,
        { sender, messageId, message, serverTimestampMs },
        sharedBody.length + messageId.length,
      );
      await this.waiting.persist();
      return;
    }
    await this.openBody(groupId, { sender, messageId, message, serverTimestampMs });
  }

  /** Items waiting in the queues (messages, distributions, updates). */
  async pendingCount(): Promise<{ messages: number; distributions: number; updates: number }> {
    await this.waiting.restore();
    return {
      messages: this.waiting.queues.count("bodies"),
      distributions: this.waiting.queues.count("distributions"),
      updates: this.waiting.queues.count("updates"),
    };
  }

  private async openBody(groupId: Uint8Array, p: PendingBody): Promise<void> {
    const id = toHex(groupId);
    const record = await this.stores.groups.load(id);
    const reject = (problem: string, detail: string) =>
      this.port.emit({ type: "group-rejected", groupId: id, from: p.sender, what: "message", problem, detail });
    if (!record?.active) return reject("inactive", "group not active on this device");
    const state = currentOf(this.provider, record).state;
    if (roleOf(state, p.sender.accountId) === undefined || record.departed.includes(p.sender.accountId))
      return reject("not-a-member", `${p.sender.accountId} is not a member`);
    if (state.adminsOnlyMessages && !isAdmin(state, p.sender.accountId)) return reject("admins-only", `${p.sender.accountId} is not an admin`);
    const d = await this.cipher.beginDecrypt(p.sender, p.message);
    try {
      if (!bytesEqual(d.content.messageId, p.messageId)) throw new InvalidMessageError("group content message_id differs from the Send's");
      await this.port.received({ groupId: id, sender: p.sender, messageId: p.messageId, content: d.content, serverTimestampMs: p.serverTimestampMs });
      // The chain moves on only once the message is stored: a failure before leaves it decryptable.
      await d.commit();
    } finally {
      d.discard();
    }
  }

  private async handleDistribution(from: DeviceRef, dist: SenderKeyDistribution): Promise<void> {
    if (dist.groupId.length !== GROUP_ID_BYTES) return;
    const id = toHex(dist.groupId);
    try {
      validateDistribution(dist); // before it waits in a queue or names a record
    } catch (e) {
      if (!(e instanceof SealpostCryptoError)) throw e;
      this.port.emit({ type: "group-rejected", groupId: id, from, what: "distribution", problem: e.code, detail: e.message });
      return;
    }
    const ready = await this.withLock(id, async () => {
      const record = await this.stores.groups.load(id);
      if (!record || roleOf(currentOf(this.provider, record).state, from.accountId) === undefined) {
        this.waiting.queues.push(
          "distributions",
          id,
          { sender: from, dist },
          dist.chainKey.length + dist.signingKey.length + dist.groupId.length + dist.distributionId.length,
        );
        return undefined;
      }
      if (!record.active || record.departed.includes(from.accountId)) return undefined;
      let distHex: string;
      try {
        distHex = await this.cipher.processDistribution(from, dist);
      } catch (e) {
        this.port.emit({
          type: "group-rejected",
          groupId: id,
          from,
          what: "distribution",
          problem: e instanceof SealpostCryptoError ? e.code : "error",
          detail: e instanceof Error ? e.message : String(e),
        });
        return undefined;
      }
      const who = addressKey(from);
      const held = [distHex, ...(record.senderKeys[who] ?? []).filter((d) => d !== distHex)];
      for (const old of held.splice(MAX_SENDER_DISTRIBUTIONS)) await this.cipher.forget(from, old);
      record.senderKeys[who] = held;
      await this.stores.groups.save(id, record);
      return `${who}/${distHex}`;
    });
    if (!ready) return;
    for (const p of this.waiting.queues.take("bodies", ready)) {
      try {
        await this.openBody(dist.groupId, p);
      } catch (e) {
        this.port.emit({
          type: "group-rejected",
          groupId: id,
          from: p.sender,
          what: "message",
          problem: e instanceof SealpostCryptoError ? e.code : "error",
          detail: e instanceof Error ? e.message : String(e),
        });
      }
    }
  }

  // ---------------------------------------------------------------- helpers

  /**
   * Verifies again the state changes held back because their signer's device list could not
   * be fetched (the Messenger calls it when the connection comes back; a timer with backoff
   * and the next send to the group do too).
   */
  retryPending(): Promise<void> {
    return this.sync.retryPending();
  }

  /** Stops the retry timer (the manager stays usable; a later deferral starts it again). */
  close(): void {
    this.sync.close();
  }

  private async requireActive(id: string): Promise<GroupRecord> {
    const record = await this.stores.groups.load(id);
    if (!record) throw new GroupError("unknown_group", `unknown group ${id}`);
    if (!record.active) throw new GroupError("inactive", "this account is no longer in the group");
    return record;
  }
}
