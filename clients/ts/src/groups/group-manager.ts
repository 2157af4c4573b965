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
 *   (pending-queues.ts); so do changes whose signer's device list could not be fetched.
 *
 * No transport here: everything goes through a GroupPort.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ContentSchema, ReceiptSchema, ReceiptType, TextSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { GroupControlSchema, GroupRole, SenderKeyDistributionSchema, type SenderKeyDistribution, type SignedGroupState } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import type { SenderKeyMessage } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { bytesEqual, fromHex, toHex } from "../crypto/bytes.js";
import { InvalidMessageError, SealpostCryptoError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { GroupCipher, groupContent } from "../protocol/group-cipher.js";
import { GROUP_ID_BYTES, MAX_SENDER_DISTRIBUTIONS } from "../protocol/group-labels.js";
import {
  applyGroupChange,
  compareForks,
  decodeSignedGroupState,
  diffGroupStates,
  encodeGroupState,
  encodeSignedGroupState,
  GroupChangeError,
  GroupStateError,
  isAdmin,
  parseSignedGroupState,
  roleOf,
  signGroupState,
  verifyFirstSeen,
  verifyGenesis,
  verifyGroupStateUpdate,
  type GroupChange,
  type SigningKeyLookup,
  type VerifiedGroupState,
} from "../protocol/group-state.js";
import { encodeSenderKeySharedBody, parseSenderKeyBody, validateDistribution, validateSenderKeyMessage } from "../protocol/sender-keys.js";
import type { GroupPendingItem, GroupRecord, GroupStores } from "../store/group-interfaces.js";
import { addressKey } from "../store/interfaces.js";
import { GroupDirectoryError, GroupError, GroupUpdatePendingError } from "./group-errors.js";
import type { GroupDeviceRef, GroupPort } from "./group-port.js";
import { PendingQueues, type PendingEntry } from "./pending-queues.js";
import { KeyedLock } from "../util/keyed-lock.js";

/** A group as the app sees it. */
export interface GroupInfo {
  /** Group id, hex. */
  groupId: string;
  title: string;
  version: number;
  members: { accountId: string; admin: boolean }[];
  adminsOnlyMessages: boolean;
  /** False once this account left or was removed. */
  active: boolean;
}

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
const MAX_RETRY_DELAY_MS = 300_000;
const MESSAGE_ID_BYTES = 16;

interface PendingBody {
  sender: GroupDeviceRef;
  messageId: Uint8Array;
  message: SenderKeyMessage;
  serverTimestampMs: number;
}

interface PendingKinds extends Record<string, unknown> {
  bodies: PendingBody;
  distributions: { sender: GroupDeviceRef; dist: SenderKeyDistribution };
  updates: { from: GroupDeviceRef; signed: SignedGroupState };
}

export class GroupManager {
  readonly cipher: GroupCipher;
  private readonly provider: CryptoProvider;
  private readonly stores: GroupStores;
  private readonly port: GroupPort;
  private readonly now: () => number;
  private readonly locks = new KeyedLock();
  /**
   * Waiting content: "bodies" (group messages waiting for their distribution, by
   * "<sender>/<distribution hex>"), "distributions" (waiting for the state that makes their
   * sender a member, by group hex), "updates" (skipping versions, or held back by a directory
   * failure, by group hex).
   */
  private readonly queues: PendingQueues<PendingKinds>;
  /** The last change this device published per group (hex), re-applied if it loses a fork. */
  private readonly ownChanges = new Map<string, { hash: string; change: GroupChange }>();
  /** Own changes that lost a fork, to publish again on top of the winner (group hex). */
  private readonly toReapply = new Map<string, GroupChange>();

  /** Groups with updates held back because the signer's device list could not be fetched. */
  private readonly deferred = new Set<string>();
  private readonly firstRetryDelayMs: number;
  private retryDelayMs: number;
  private retryTimer?: ReturnType<typeof setTimeout>;

  /** Queues restored from stores.pending (once); saves of their changes, one at a time. */
  private restored?: Promise<void>;
  private saving: Promise<void> = Promise.resolve();

  constructor(o: GroupManagerOptions) {
    this.provider = o.provider;
    this.stores = o.stores;
    this.port = o.port;
    this.now = o.now ?? Date.now;
    this.queues = new PendingQueues<PendingKinds>(
      { perKey: o.maxPending ?? 500, items: o.maxPendingTotal ?? 5000, bytes: o.maxPendingBytes ?? 32 * 1024 * 1024 },
      (e, bound) => this.reportDropped(e, bound),
    );
    this.firstRetryDelayMs = this.retryDelayMs = o.retryDelayMs ?? 1000;
    this.cipher = new GroupCipher(o.provider, o.stores.senderKeys, { now: this.now });
  }

  private get self(): GroupDeviceRef {
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
    const signed = signGroupState(this.provider, bytes, this.self, await this.port.signingSeed());
    const verified = verifyGenesis(this.provider, signed, await this.lookupFor([me]));
    const record: GroupRecord = { groupId, signedState: encodeSignedGroupState(signed), senderKeys: {}, distributedTo: [], departed: [], active: true, updatedAtMs: this.now() };
    await this.stores.groups.save(toHex(groupId), record);
    await this.port.sendPairwise(this.controlContent(groupId, { case: "update", value: signed }), others(accounts, me));
    this.port.emit({ type: "group-updated", groupId: toHex(groupId), version: 1, signer: this.self, diff: diffGroupStates(emptyState(), verified.state), joined: true });
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
      const signed = signGroupState(this.provider, bytes, this.self, await this.port.signingSeed());
      const next = verifyGroupStateUpdate(this.provider, current, signed, await this.lookupFor([this.self.accountId]));
      await this.accept(record, current, next, this.self);
      this.ownChanges.set(id, { hash: toHex(next.hash), change });
      const all = new Set([...current.state.members, ...next.state.members].map((m) => m.accountId));
      return { verified: next, recipients: others(all, this.self.accountId) };
    });
    await this.port.sendPairwise(this.controlContent(verified.state.groupId, { case: "update", value: verified.signed }), recipients);
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
      await this.deactivate(id);
      return;
    }
    if (isAdmin(current.state, me)) {
      const promote = rest.some((m) => m.role === GroupRole.ADMIN) ? [] : [rest[0].accountId];
      await this.publish(id, { remove: [me], promote });
      return;
    }
    await this.port.sendPairwise(this.controlContent(current.state.groupId, { case: "leave", value: { groupId: current.state.groupId } }), rest.map((m) => m.accountId));
    await this.deactivate(id);
    this.port.emit({ type: "group-left", groupId: id });
  }

  // ---------------------------------------------------------------- sending

  /** Sends a text to the group: one encryption, one Send to every member device. */
  sendText(groupId: string | Uint8Array, text: string, opts: { quoteMessageId?: Uint8Array; messageId?: Uint8Array } = {}): Promise<{ messageId: Uint8Array; serverTimestampMs: number; devices: number }> {
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
    if (this.deferred.has(id)) {
      // A state change (maybe a removal) could not be verified yet: verify it before sending.
      await this.retryPending();
      if (this.deferred.has(id)) throw new GroupUpdatePendingError("a change of the group waits for its signer's device list; retry later");
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
  private async recipientDevices(record: GroupRecord, current: VerifiedGroupState, refresh: Set<string>): Promise<GroupDeviceRef[]> {
    const out: GroupDeviceRef[] = [];
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
  private async ensureDistributed(record: GroupRecord, current: VerifiedGroupState, devices: GroupDeviceRef[]): Promise<void> {
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
      await this.port.sendPairwise(this.controlContent(record.groupId, { case: "update", value: current.signed }), accounts);
      await this.port.sendPairwise(groupContent(record.groupId, { sentAtMs: BigInt(this.now()), body: { case: "senderKeyDistribution", value: dist } }), accounts);
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
  async handleContent(sender: GroupDeviceRef, content: Content): Promise<boolean> {
    const b = content.body;
    if (b.case !== "groupControl" && b.case !== "senderKeyDistribution") return false;
    await this.restore();
    try {
      return await this.dispatchContent(sender, content);
    } finally {
      await this.persist();
    }
  }

  private async dispatchContent(sender: GroupDeviceRef, content: Content): Promise<boolean> {
    const b = content.body;
    if (b.case === "groupControl") {
      const k = b.value.kind;
      if (k.case === "update") await this.handleUpdate(sender, k.value);
      else if (k.case === "leave") await this.handleLeave(sender, k.value.groupId);
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
  async handleGroupBody(sender: GroupDeviceRef, messageId: Uint8Array, sharedBody: Uint8Array, serverTimestampMs: number): Promise<void> {
    const message = parseSenderKeyBody(sharedBody);
    if (!message) throw new InvalidMessageError("shared body is not a sender-key message");
    // Wire fields that become store keys are checked before any store is touched.
    validateSenderKeyMessage(message);
    if (messageId.length !== MESSAGE_ID_BYTES) throw new InvalidMessageError("group message_id must be 16 bytes");
    await this.restore();
    const groupId = await this.cipher.groupOf(sender, message);
    if (!groupId) {
      this.queues.push("bodies", `${addressKey(sender)}/${toHex(message.distributionId)}`, { sender, messageId, message, serverTimestampMs }, sharedBody.length + messageId.length);
      await this.persist();
      return;
    }
    await this.openBody(groupId, { sender, messageId, message, serverTimestampMs });
  }

  /** Items waiting in the queues (messages, distributions, updates). */
  async pendingCount(): Promise<{ messages: number; distributions: number; updates: number }> {
    await this.restore();
    return { messages: this.queues.count("bodies"), distributions: this.queues.count("distributions"), updates: this.queues.count("updates") };
  }

  private restore(): Promise<void> {
    this.restored ??= (async () => {
      for (const item of (await this.stores.pending?.list()) ?? []) {
        if (item.kind === "body") {
          const message = parseSenderKeyBody(item.sharedBody);
          if (!message) continue;
          const entry = { sender: item.sender, messageId: item.messageId, message, serverTimestampMs: item.serverTimestampMs };
          this.queues.push("bodies", `${addressKey(item.sender)}/${toHex(message.distributionId)}`, entry, item.sharedBody.length + item.messageId.length, item.id);
        } else if (item.kind === "distribution") {
          const dist = fromBinary(SenderKeyDistributionSchema, item.distribution);
          this.queues.push("distributions", toHex(dist.groupId), { sender: item.sender, dist }, item.distribution.length, item.id);
        } else {
          const signed = decodeSignedGroupState(item.signed);
          const gid = groupIdOf(signed);
          if (gid) {
            this.queues.push("updates", gid, { from: item.from, signed }, item.signed.length, item.id);
            this.deferred.add(gid); // held back by the directory before the restart, maybe
          }
        }
      }
      if (this.deferred.size > 0) this.scheduleRetry();
    })();
    return this.restored;
  }

  /**
   * Saves what changed in the queues since the last save (before the caller acknowledges the
   * mail): only the items added and removed, one record each. Saves run one at a time.
   */
  private persist(): Promise<void> {
    const run = this.saving.then(async () => {
      const pending = this.stores.pending;
      if (!pending) return;
      const { put, removed } = this.queues.takeChanges();
      for (const e of put) await pending.put(pendingRecord(e));
      for (const id of removed) await pending.remove(id);
    });
    this.saving = run.catch(() => undefined);
    return run;
  }

  /** The oldest waiting item was dropped to keep the queues bounded. */
  private reportDropped(e: PendingEntry<PendingKinds>, bound: "per-key" | "items" | "bytes"): void {
    const detail = `waiting-content bound reached (${bound}): oldest item dropped`;
    if (e.kind === "bodies") {
      const b = e.item as PendingBody;
      this.port.emit({ type: "group-rejected", from: b.sender, what: "message", problem: "queue-full", detail });
    } else if (e.kind === "distributions") {
      const d = e.item as PendingKinds["distributions"];
      this.port.emit({ type: "group-rejected", groupId: e.key, from: d.sender, what: "distribution", problem: "queue-full", detail });
    } else {
      const u = e.item as PendingKinds["updates"];
      this.port.emit({ type: "group-rejected", groupId: e.key, from: u.from, what: "state", problem: "queue-full", detail });
    }
  }

  private async openBody(groupId: Uint8Array, p: PendingBody): Promise<void> {
    const id = toHex(groupId);
    const record = await this.stores.groups.load(id);
    const reject = (problem: string, detail: string) => this.port.emit({ type: "group-rejected", groupId: id, from: p.sender, what: "message", problem, detail });
    if (!record || !record.active) return reject("inactive", "group not active on this device");
    const state = currentOf(this.provider, record).state;
    if (roleOf(state, p.sender.accountId) === undefined || record.departed.includes(p.sender.accountId)) return reject("not-a-member", `${p.sender.accountId} is not a member`);
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

  private async handleUpdate(from: GroupDeviceRef, signed: SignedGroupState): Promise<void> {
    let groupId: string;
    try {
      groupId = toHex(parseSignedGroupState(signed).groupId);
    } catch (e) {
      this.rejectState(undefined, from, e);
      return;
    }
    const held = await this.withLock(groupId, async () => {
      const signer = signed.signer?.accountId ?? "";
      const unavailable = new Set<string>();
      let lookup = await this.lookupFor([signer], false, unavailable);
      // A signer device we do not know yet (linked since our list was fetched): refresh once.
      if (signed.signer && !lookup({ accountId: signer, deviceId: signed.signer.deviceId })) {
        unavailable.clear();
        lookup = await this.lookupFor([signer], true, unavailable);
        if (unavailable.has(signer)) {
          // The list could not be fetched (network, server): no verdict on the change. It
          // waits and is verified again later (backoff, next send, next change of the group).
          this.queues.push("updates", groupId, { from, signed }, signed.state.length + signed.signature.length);
          this.deferred.add(groupId);
          this.scheduleRetry();
          return true;
        }
      }
      const record = await this.stores.groups.load(groupId);
      if (record && !record.active) {
        const current = currentOf(this.provider, record);
        const listsUs = roleOf(parseSignedGroupState(signed), this.self.accountId) !== undefined;
        if (!listsUs) {
          // Not ours any more: keep the chain current when it follows on, quietly otherwise.
          try {
            const verifiedNext = verifyGroupStateUpdate(this.provider, current, signed, lookup);
            await this.accept(record, current, verifiedNext, signerOf(verifiedNext));
          } catch (e) {
            if (!(e instanceof GroupStateError)) throw e;
          }
          return;
        }
        // Added back after we left or were removed: we missed the versions in between, so
        // this is a first-seen state (below), accepted only when newer than what we hold.
        if (parseSignedGroupState(signed).version <= current.state.version) return;
      }
      if (!record || !record.active) {
        let v: VerifiedGroupState;
        try {
          v = parseSignedGroupState(signed).version === 1n ? verifyGenesis(this.provider, signed, lookup) : verifyFirstSeen(this.provider, signed, lookup, this.self.accountId);
          if (roleOf(v.state, this.self.accountId) === undefined) throw new GroupStateError("not-a-member", "this account is not a member of that state");
        } catch (e) {
          this.rejectState(groupId, from, e);
          return;
        }
        const fresh: GroupRecord = { groupId: v.state.groupId, signedState: encodeSignedGroupState(v.signed), senderKeys: {}, distributedTo: [], departed: [], active: true, updatedAtMs: this.now() };
        if (record) await this.cipher.forgetOwn(record.groupId); // a new sending key after a gap in membership
        await this.stores.groups.save(groupId, fresh);
        this.port.emit({ type: "group-updated", groupId, version: Number(v.state.version), signer: signerOf(v), diff: diffGroupStates(emptyState(), v.state), joined: true });
        return;
      }
      const current = currentOf(this.provider, record);
      let next: VerifiedGroupState;
      try {
        next = verifyGroupStateUpdate(this.provider, current, signed, lookup);
      } catch (e) {
        if (e instanceof GroupStateError && e.problem === "stale") {
          if (bytesEqual(this.provider.sha256(signed.state), current.hash)) return; // the same version again
          if (await this.tryFork(record, current, signed, lookup)) return;
        }
        if (e instanceof GroupStateError && e.problem === "gap") {
          this.queues.push("updates", groupId, { from, signed }, signed.state.length + signed.signature.length);
          return;
        }
        this.rejectState(groupId, from, e);
        return;
      }
      await this.accept(record, current, next, signerOf(next));
      return false;
    });
    if (held) return;
    await this.drain(groupId);
    const lost = this.toReapply.get(groupId);
    if (lost) {
      // Our change lost a fork: publish it again on top of the winner, when it still applies.
      this.toReapply.delete(groupId);
      try {
        await this.publish(groupId, lost);
      } catch (e) {
        if (!(e instanceof GroupError)) throw e;
        this.port.emit({ type: "group-rejected", groupId, from: this.self, what: "state", problem: "fork-lost", detail: `own change no longer applies: ${e.message}` });
      }
    }
  }

  /** Fork choice at the current version: the lower state hash wins while nothing builds on either. */
  private async tryFork(record: GroupRecord, current: VerifiedGroupState, signed: SignedGroupState, lookup: SigningKeyLookup): Promise<boolean> {
    if (!record.previousSignedState) return false;
    const previous = verifiedFromBytes(this.provider, record.previousSignedState);
    let candidate: VerifiedGroupState;
    try {
      candidate = verifyGroupStateUpdate(this.provider, previous, signed, lookup);
    } catch {
      return false;
    }
    if (compareForks(candidate, current) >= 0) return true; // ours wins; the other is dropped
    await this.accept(record, current, candidate, signerOf(candidate), previous);
    const id = toHex(record.groupId);
    const mine = this.ownChanges.get(id);
    if (mine && mine.hash === toHex(current.hash)) this.toReapply.set(id, mine.change);
    return true;
  }

  /** Applies a verified next version: membership effects, store, event. */
  private async accept(record: GroupRecord, current: VerifiedGroupState, next: VerifiedGroupState, signer: GroupDeviceRef, previous?: VerifiedGroupState): Promise<void> {
    const id = toHex(record.groupId);
    const diff = diffGroupStates(current.state, next.state);
    record.previousSignedState = previous ? encodeSignedGroupState(previous.signed) : record.signedState;
    record.signedState = encodeSignedGroupState(next.signed);
    record.departed = record.departed.filter((a) => roleOf(next.state, a) !== undefined);
    record.updatedAtMs = this.now();
    for (const account of diff.removed) await this.forgetSender(record, account);
    // Accounts added (back): their devices need our key again, at its current iteration.
    record.distributedTo = record.distributedTo.filter((k) => !diff.added.some((a) => k.startsWith(`${a}.`)));
    await this.stores.groups.save(id, record);
    if (roleOf(next.state, this.self.accountId) === undefined && record.active) {
      await this.deactivate(id);
      this.port.emit({ type: "group-left", groupId: id, removedBy: signer });
    }
    // Removed members' devices are still in distributedTo: the next send rotates (ensureDistributed).
    this.port.emit({ type: "group-updated", groupId: id, version: Number(next.state.version), signer, diff, joined: false });
  }

  private async handleLeave(from: GroupDeviceRef, groupIdBytes: Uint8Array): Promise<void> {
    if (groupIdBytes.length !== GROUP_ID_BYTES) return;
    const id = toHex(groupIdBytes);
    const adminShouldPublish = await this.withLock(id, async () => {
      const record = await this.stores.groups.load(id);
      if (!record || !record.active) return false;
      const state = currentOf(this.provider, record).state;
      if (from.accountId === this.self.accountId) {
        // Another device of this account left: so does this one.
        await this.deactivate(id);
        this.port.emit({ type: "group-left", groupId: id });
        return false;
      }
      if (roleOf(state, from.accountId) === undefined) return false;
      if (!record.departed.includes(from.accountId)) record.departed.push(from.accountId);
      await this.forgetSender(record, from.accountId);
      await this.stores.groups.save(id, record);
      this.port.emit({ type: "group-member-left", groupId: id, accountId: from.accountId });
      return isAdmin(state, this.self.accountId);
    });
    if (adminShouldPublish) {
      try {
        await this.publish(id, { remove: [from.accountId] });
      } catch (e) {
        // Another admin may have published the same removal first: nothing to do.
        if (!(e instanceof GroupError)) throw e;
      }
    }
  }

  private async handleDistribution(from: GroupDeviceRef, dist: SenderKeyDistribution): Promise<void> {
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
        this.queues.push("distributions", id, { sender: from, dist }, dist.chainKey.length + dist.signingKey.length + dist.groupId.length + dist.distributionId.length);
        return undefined;
      }
      if (!record.active || record.departed.includes(from.accountId)) return undefined;
      let distHex: string;
      try {
        distHex = await this.cipher.processDistribution(from, dist);
      } catch (e) {
        this.port.emit({ type: "group-rejected", groupId: id, from, what: "distribution", problem: e instanceof SealpostCryptoError ? e.code : "error", detail: e instanceof Error ? e.message : String(e) });
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
    for (const p of this.queues.take("bodies", ready)) {
      try {
        await this.openBody(dist.groupId, p);
      } catch (e) {
        this.port.emit({ type: "group-rejected", groupId: id, from: p.sender, what: "message", problem: e instanceof SealpostCryptoError ? e.code : "error", detail: e instanceof Error ? e.message : String(e) });
      }
    }
  }

  /** Retries waiting updates and distributions of a group after its state changed. */
  private async drain(groupId: string): Promise<void> {
    const record = await this.stores.groups.load(groupId);
    const version = record ? currentOf(this.provider, record).state.version : 0n;
    const u = this.queues.peek("updates", groupId).find((x) => versionOf(x.signed) === version + 1n);
    if (u) {
      this.queues.removeItem("updates", groupId, u);
      await this.handleUpdate(u.from, u.signed); // drains again after it
      return;
    }
    if (!record) return;
    const dists = this.queues.take("distributions", groupId);
    for (const d of dists) await this.handleDistribution(d.sender, d.dist);
  }

  // ---------------------------------------------------------------- helpers

  private controlContent(groupId: Uint8Array, kind: { case: "update"; value: SignedGroupState } | { case: "leave"; value: { groupId: Uint8Array } }): Content {
    return groupContent(groupId, { sentAtMs: BigInt(this.now()), body: { case: "groupControl", value: create(GroupControlSchema, { kind }) } });
  }

  /**
   * A lookup of current devices' signing keys for these accounts (fetched now). An account
   * whose list is untrusted or unknown (GroupDirectoryError) signs nothing we accept; one whose
   * list could not be fetched (any other error: network, server) signs nothing either and is
   * added to `unavailable`, so the caller can try again later instead of rejecting.
   */
  private async lookupFor(accounts: string[], refresh = false, unavailable?: Set<string>): Promise<SigningKeyLookup> {
    const keys = new Map<string, Uint8Array>();
    for (const a of new Set(accounts)) {
      if (!a) continue;
      try {
        for (const d of await this.port.devices(a, { refresh })) keys.set(`${a}.${d.deviceId}`, d.signingKey);
      } catch (e) {
        if (!(e instanceof GroupDirectoryError)) unavailable?.add(a);
      }
    }
    return (d) => keys.get(`${d.accountId}.${d.deviceId}`);
  }

  /**
   * Verifies again the state changes held back because their signer's device list could not
   * be fetched (the Messenger calls it when the connection comes back; a timer with backoff
   * and the next send to the group do too).
   */
  async retryPending(): Promise<void> {
    await this.restore();
    try {
      for (const id of [...this.deferred]) {
        this.deferred.delete(id);
        const updates = this.queues.take("updates", id);
        updates.sort((a, b) => (versionOf(a.signed) < versionOf(b.signed) ? -1 : versionOf(a.signed) > versionOf(b.signed) ? 1 : 0));
        // Each goes through the usual path again: accepted, rejected, waits for a gap, or held again.
        for (let i = 0; i < updates.length; i++) {
          try {
            await this.handleUpdate(updates[i].from, updates[i].signed);
          } catch (e) {
            for (const u of updates.slice(i)) this.queues.push("updates", id, u, u.signed.state.length + u.signed.signature.length); // kept, tried again later
            this.deferred.add(id);
            this.scheduleRetry();
            throw e;
          }
        }
      }
    } finally {
      await this.persist();
    }
    if (this.deferred.size === 0) this.retryDelayMs = this.firstRetryDelayMs;
  }

  /** Stops the retry timer (the manager stays usable; a later deferral starts it again). */
  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    const delay = this.retryDelayMs;
    this.retryDelayMs = Math.min(delay * 2, MAX_RETRY_DELAY_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryPending().catch(() => this.scheduleRetry());
    }, delay);
    (this.retryTimer as { unref?: () => void }).unref?.();
  }

  private async requireActive(id: string): Promise<GroupRecord> {
    const record = await this.stores.groups.load(id);
    if (!record) throw new GroupError("unknown_group", `unknown group ${id}`);
    if (!record.active) throw new GroupError("inactive", "this account is no longer in the group");
    return record;
  }

  private async forgetSender(record: GroupRecord, accountId: string): Promise<void> {
    for (const [who, dists] of Object.entries(record.senderKeys)) {
      if (!who.startsWith(`${accountId}.`)) continue;
      const deviceId = Number(who.slice(accountId.length + 1));
      for (const d of dists) await this.cipher.forget({ accountId, deviceId }, d);
      delete record.senderKeys[who];
    }
  }

  private async deactivate(id: string): Promise<void> {
    const record = await this.stores.groups.load(id);
    if (!record) return;
    for (const [who, dists] of Object.entries(record.senderKeys)) {
      const dot = who.lastIndexOf(".");
      for (const d of dists) await this.cipher.forget({ accountId: who.slice(0, dot), deviceId: Number(who.slice(dot + 1)) }, d);
    }
    await this.cipher.forgetOwn(record.groupId);
    record.senderKeys = {};
    record.distributedTo = [];
    record.active = false;
    record.updatedAtMs = this.now();
    await this.stores.groups.save(id, record);
  }

  private rejectState(groupId: string | undefined, from: GroupDeviceRef, e: unknown): void {
    if (!(e instanceof GroupStateError)) throw e;
    this.port.emit({ type: "group-rejected", groupId, from, what: "state", problem: e.problem, detail: e.message });
  }
}

function groupIdOf(signed: SignedGroupState): string | undefined {
  try {
    return toHex(parseSignedGroupState(signed).groupId);
  } catch {
    return undefined;
  }
}

function versionOf(signed: SignedGroupState): bigint {
  try {
    return parseSignedGroupState(signed).version;
  } catch {
    return 0n;
  }
}

function hexId(groupId: string | Uint8Array): string {
  return typeof groupId === "string" ? groupId.toLowerCase() : toHex(groupId);
}

function others(accounts: Iterable<string>, me: string): string[] {
  return [...new Set(accounts)].filter((a) => a !== me).sort();
}

function verifiedFromBytes(provider: CryptoProvider, bytes: Uint8Array): VerifiedGroupState {
  const signed = decodeSignedGroupState(bytes);
  return { signed, state: parseSignedGroupState(signed), hash: provider.sha256(signed.state) };
}

/** The stored (already verified) current version. */
function currentOf(provider: CryptoProvider, record: GroupRecord): VerifiedGroupState {
  return verifiedFromBytes(provider, record.signedState);
}

function signerOf(v: VerifiedGroupState): GroupDeviceRef {
  return { accountId: v.signed.signer!.accountId, deviceId: v.signed.signer!.deviceId };
}

function emptyState() {
  return { members: [], title: "", adminsOnlyMessages: false } as unknown as VerifiedGroupState["state"];
}

function toInfo(record: GroupRecord, v: VerifiedGroupState): GroupInfo {
  return {
    groupId: toHex(record.groupId),
    title: v.state.title,
    version: Number(v.state.version),
    members: v.state.members.map((m) => ({ accountId: m.accountId, admin: m.role === GroupRole.ADMIN })),
    adminsOnlyMessages: v.state.adminsOnlyMessages,
    active: record.active,
  };
}

/** The stored form of a waiting item. */
function pendingRecord(e: PendingEntry<PendingKinds>): GroupPendingItem {
  if (e.kind === "bodies") {
    const b = e.item as PendingBody;
    const m = b.message;
    return { id: e.id, kind: "body", sender: b.sender, messageId: b.messageId, sharedBody: encodeSenderKeySharedBody(m.distributionId, m.chainId, m.iteration, m.ciphertext, m.signature), serverTimestampMs: b.serverTimestampMs };
  }
  if (e.kind === "distributions") {
    const d = e.item as PendingKinds["distributions"];
    return { id: e.id, kind: "distribution", sender: d.sender, distribution: toBinary(SenderKeyDistributionSchema, d.dist) };
  }
  const u = e.item as PendingKinds["updates"];
  return { id: e.id, kind: "update", from: u.from, signed: encodeSignedGroupState(u.signed) };
}
