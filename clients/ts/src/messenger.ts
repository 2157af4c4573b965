/**
 * Messenger: what an app uses, without touching crypto. One instance is one device of one
 * account. It owns the local store (history, outbox, cursor, trusted device lists), the
 * sessions (SessionCipher), the receive loop, the outbox, the directory cache and prekey
 * upkeep, and reports everything as typed events (events.ts).
 *
 *   const alice = await Messenger.createAccount({ serverUrl, accountId: "alice", deviceName: "phone", ...createMemoryMessengerStores() });
 *   alice.start();
 *   await alice.sendText("bob", "hi");
 *   for await (const e of alice.events()) if (e.type === "message") show(e.message);
 *
 * Content dispatch is a handler map by Content.body case (registerContentHandler), so other
 * content kinds (groups: group_control, sender_key_distribution, sender-key bodies) plug in
 * without changing the receive path. Clock and randomness are injected (options.now,
 * options.random / options.provider). Nothing here logs plaintext or keys.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Stored } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { DeviceListSchema, SignedDeviceListSchema, type DeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import {
  ContentSchema,
  ConversationSchema,
  ReadMarkSchema,
  ReceiptType,
  TextSchema,
  type Content,
} from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { LinkCodeSchema } from "@sealpost/gen/sealpost/envelope/v1/link_code_pb.js";
import { toHex } from "./crypto/bytes.js";
import { DuplicateMessageError, UntrustedIdentityError } from "./crypto/errors.js";
import { createNodeProvider } from "./crypto/node-provider.js";
import type { CryptoProvider, RandomSource } from "./crypto/provider.js";
import { verifyDeviceListChain } from "./directory/device-list-chain.js";
import {
  createFirstDeviceList,
  generateDeviceKeys,
  linkDeviceChange,
  revokeDeviceChange,
  type GeneratedDeviceKeys,
} from "./directory/device-list-changes.js";
import { verifyDhKeySignature, type LocalIdentity } from "./protocol/identity.js";
import { formatSafetyNumber, safetyNumber } from "./protocol/safety-number.js";
import { SessionCipher, type DecryptedMessage, type PendingDecryption } from "./protocol/session-cipher.js";
import { createMemoryStores } from "./store/memory-store.js";
import { createFileStores } from "./store/file-store.js";
import type { ProtocolStores } from "./store/interfaces.js";
import { attachmentInfoOf, attachmentPointer, downloadAttachment, uploadAttachment, type AttachmentMeta } from "./attachments.js";
import { sleep, type BackoffOptions } from "./backoff.js";
import { ContactDirectory } from "./contact-directory.js";
import {
  directConversation,
  directPeer,
  groupConversation,
  type AccountRecord,
  type AttachmentInfo,
  type ConversationKey,
  type ConversationStore,
  type DeviceRef,
  type MessageBody,
  type OutboxItem,
  type StoredMessage,
} from "./conversation-store.js";
import { EventBus, type EventListener } from "./event-bus.js";
import type { MessengerEvent, ReceiveProblem } from "./events.js";
import { FileConversationStore } from "./file-conversation-store.js";
import { MemoryConversationStore } from "./memory-conversation-store.js";
import { MessengerError } from "./messenger-errors.js";
import { Outbox, isTransient } from "./outbox.js";
import { PrekeyMaintenance, defaultPrekeyPolicy, initialPrekeys, type PrekeyPolicy } from "./prekey-maintenance.js";
import { ReceiveLoop } from "./receive-loop.js";
import { ServerApi, type TransportFactory } from "./server-api.js";

/** The two stores a Messenger keeps: protocol state (keys, sessions) and conversation state. */
export interface MessengerStores {
  protocol: ProtocolStores;
  store: ConversationStore;
}

export function createMemoryMessengerStores(): MessengerStores {
  return { protocol: createMemoryStores(), store: new MemoryConversationStore() };
}

/** Durable stores under `dir` (protocol/ and conversations/); `fsync: false` only for tests. */
export function createFileMessengerStores(dir: string, opts: { fsync?: boolean } = {}): MessengerStores {
  return { protocol: createFileStores(`${dir}/protocol`, opts), store: new FileConversationStore(`${dir}/conversations`, opts) };
}

export interface MessengerOptions extends MessengerStores {
  serverUrl: string;
  /** Crypto provider (default: node:crypto, with `random` if given). */
  provider?: CryptoProvider;
  /** Random bytes (tests: createDeterministicRandom). Ignored when `provider` is given. */
  random?: RandomSource;
  /** Milliseconds since the epoch. */
  now?: () => number;
  /** How long a verified device list is used without asking the server (default 10 min). */
  directoryTtlMs?: number;
  /** Send delivery receipts automatically when a message is stored (default true). */
  autoDeliveryReceipts?: boolean;
  prekeyPolicy?: Partial<PrekeyPolicy>;
  /** How often prekeys are checked while running (default 1 h). */
  prekeyCheckIntervalMs?: number;
  backoff?: BackoffOptions;
  /** Watch the directory for changes of this account and of contacts (default true). */
  watchDirectory?: boolean;
  transport?: TransportFactory;
}

/** Context handed to a content handler. */
export interface ContentContext {
  sender: DeviceRef;
  /** True when another device of this account sent it. */
  fromSelf: boolean;
  content: Content;
  mail: MailboxMessage;
  decrypted: DecryptedMessage;
}

export type ContentHandler = (ctx: ContentContext) => Promise<void>;
/** Handlers by Content.body case, plus "senderKeyBody" for shared bodies the group layer opens. */
export type ContentCase = NonNullable<Content["body"]["case"]> | "senderKeyBody";

/** Whether `accountId` is a member of the group `groupId` (16 bytes), as the group layer knows it. */
export type GroupMembershipCheck = (groupId: Uint8Array, accountId: string) => Promise<boolean>;

/** A device of an account as the UI lists it. */
export interface DeviceInfo {
  accountId: string;
  deviceId: number;
  name: string;
  addedAtMs: number;
  isThisDevice: boolean;
}

/** A new device waiting to be linked: show `code`, then await `complete()`. */
export interface PendingLink {
  /** base64 of an envelope.v1.LinkCode (public keys only). */
  code: string;
  /** Waits until an existing device linked this one, then sets it up. */
  complete(opts?: { timeoutMs?: number; pollMs?: number }): Promise<Messenger>;
}

const MAX_RECEIPT_IDS = 100;

interface Resolved {
  provider: CryptoProvider;
  now: () => number;
  api: ServerApi;
}

function resolve(opts: MessengerOptions): Resolved {
  const provider = opts.provider ?? createNodeProvider(opts.random ? { random: opts.random } : {});
  const now = opts.now ?? Date.now;
  return { provider, now, api: new ServerApi({ baseUrl: opts.serverUrl, provider, now, transport: opts.transport }) };
}

function localIdentityOf(keys: GeneratedDeviceKeys, deviceId: number): LocalIdentity {
  return {
    deviceId,
    signingSeed: keys.signingSeed,
    signingKey: keys.signingKey,
    dhPrivateKey: keys.dhPrivateKey,
    dhKey: keys.dhKey,
    dhKeySignature: keys.dhKeySignature,
  };
}

function newAccountRecord(accountId: string, deviceId: number, deviceName: string, serverUrl: string, now: number, policy: PrekeyPolicy): AccountRecord {
  return {
    accountId,
    deviceId,
    deviceName,
    serverUrl,
    createdAtMs: now,
    nextOneTimePrekeyId: Math.min(policy.target, 100) + 1,
    signedPrekeyId: 1,
    signedPrekeyCreatedAtMs: now,
    kemPrekeyId: 1,
    kemPrekeyCreatedAtMs: now,
  };
}

export class Messenger {
  readonly provider: CryptoProvider;
  readonly api: ServerApi;
  readonly directory: ContactDirectory;
  readonly cipher: SessionCipher;
  readonly store: ConversationStore;
  readonly protocol: ProtocolStores;
  private readonly now: () => number;
  private readonly bus = new EventBus();
  private readonly outbox: Outbox;
  private readonly receiver: ReceiveLoop;
  private readonly prekeys: PrekeyMaintenance;
  private readonly handlers = new Map<ContentCase, ContentHandler>();
  private groupBodyHandler?: (sender: DeviceRef, mail: MailboxMessage) => Promise<void>;
  private groupMembership?: GroupMembershipCheck;
  private readonly autoDeliveryReceipts: boolean;
  private readonly watchEnabled: boolean;
  private readonly prekeyCheckIntervalMs: number;
  private prekeyTimer?: NodeJS.Timeout;
  private watch?: { abort: AbortController; accounts: string; done: Promise<void> };
  private running = false;
  private revoked = false;
  private lastSentAtMs = 0;

  private constructor(
    private readonly account: AccountRecord,
    opts: MessengerOptions,
    r: Resolved,
    signingSeed: Uint8Array,
  ) {
    this.provider = r.provider;
    this.api = r.api;
    this.now = r.now;
    this.store = opts.store;
    this.protocol = opts.protocol;
    this.api.setDevice(this.address, signingSeed);
    const emit = (e: MessengerEvent) => this.bus.emit(e);
    this.autoDeliveryReceipts = opts.autoDeliveryReceipts ?? true;
    this.watchEnabled = opts.watchDirectory ?? true;
    this.prekeyCheckIntervalMs = opts.prekeyCheckIntervalMs ?? 3600_000;
    this.cipher = new SessionCipher(this.provider, this.protocol, this.address, { now: this.now, requireKnownIdentity: true });
    this.directory = new ContactDirectory({
      api: this.api,
      provider: this.provider,
      store: this.store,
      identity: this.protocol.identity,
      now: this.now,
      ttlMs: opts.directoryTtlMs ?? 10 * 60_000,
      self: () => this.address,
      emit: (e) => this.onDirectoryEvent(e),
      forgetDevice: (device) => this.cipher.forgetDevice(device),
    });
    this.outbox = new Outbox({
      store: this.store,
      api: this.api,
      cipher: this.cipher,
      directory: this.directory,
      self: () => this.address,
      emit,
      onStored: (item, stored) => this.onStored(item, stored),
      onFailed: (item, reason) => this.onFailed(item, reason),
      onFatal: () => this.onRevoked(),
      backoff: opts.backoff,
    });
    this.receiver = new ReceiveLoop({
      api: this.api,
      store: this.store,
      emit,
      process: (m) => this.processMail(m),
      onFatal: (why) => (why === "replaced" ? emit({ type: "connection", state: "offline", error: "replaced by another stream of this device" }) : this.onRevoked()),
      backoff: opts.backoff,
    });
    this.prekeys = new PrekeyMaintenance({
      api: this.api,
      provider: this.provider,
      protocol: this.protocol,
      store: this.store,
      now: this.now,
      emit,
      policy: { ...defaultPrekeyPolicy, ...opts.prekeyPolicy },
    });
    this.handlers.set("text", (ctx) => this.onMessageContent(ctx));
    this.handlers.set("attachment", (ctx) => this.onMessageContent(ctx));
    this.handlers.set("receipt", (ctx) => this.onReceipt(ctx));
    this.handlers.set("typing", (ctx) => this.onTyping(ctx));
    this.handlers.set("sync", (ctx) => this.onSync(ctx));
  }

  // ---------------------------------------------------------------- lifecycle

  /** Registers a new account with this device as its first device. */
  static async createAccount(opts: MessengerOptions & { accountId: string; deviceName: string }): Promise<Messenger> {
    if (await opts.store.getAccount()) throw new MessengerError("already_initialized", "this store already holds an account");
    const r = resolve(opts);
    const nowMs = r.now();
    const policy = { ...defaultPrekeyPolicy, ...opts.prekeyPolicy };
    const keys = generateDeviceKeys(r.provider, opts.deviceName);
    const signed = createFirstDeviceList(r.provider, { accountId: opts.accountId, device: keys, nowMs });
    await opts.protocol.identity.setLocalIdentity(localIdentityOf(keys, 1));
    const prekeys = await initialPrekeys(r.provider, opts.protocol, policy, nowMs);
    const res = await r.api.open.createAccount({
      deviceList: signed,
      signedPrekey: prekeys.signedPrekey,
      kemPrekey: prekeys.kemPrekey,
      oneTimePrekeys: prekeys.oneTimePrekeys,
    });
    const deviceId = res.device?.deviceId ?? 1;
    const account = newAccountRecord(opts.accountId, deviceId, opts.deviceName, opts.serverUrl, nowMs, policy);
    await opts.store.setAccount(account);
    const m = new Messenger(account, opts, r, keys.signingSeed);
    await m.directory.trust(opts.accountId, verifyDeviceListChain(r.provider, { accountId: opts.accountId, history: [signed], current: signed }));
    return m;
  }

  /** Opens an existing device from its stores. */
  static async open(opts: MessengerOptions): Promise<Messenger> {
    const account = await opts.store.getAccount();
    const local = await opts.protocol.identity.getLocalIdentity();
    if (!account || !local) throw new MessengerError("not_initialized", "this store holds no account; create or link one first");
    return new Messenger(account, { ...opts, serverUrl: opts.serverUrl || account.serverUrl }, resolve(opts), local.signingSeed);
  }

  /**
   * Starts linking this (new) device to an existing account: returns the code to show to a
   * device of the account (`linkDevice(code)` there) and a function that finishes the setup
   * once the link is in the account's signed device list.
   */
  static async startLink(opts: MessengerOptions & { accountId: string; deviceName: string }): Promise<PendingLink> {
    if (await opts.store.getAccount()) throw new MessengerError("already_initialized", "this store already holds an account");
    const r = resolve(opts);
    const keys = generateDeviceKeys(r.provider, opts.deviceName);
    const code = Buffer.from(
      toBinary(
        LinkCodeSchema,
        create(LinkCodeSchema, { accountId: opts.accountId, signingKey: keys.signingKey, dhKey: keys.dhKey, dhKeySignature: keys.dhKeySignature, name: opts.deviceName }),
      ),
    ).toString("base64");
    const complete = async (c: { timeoutMs?: number; pollMs?: number } = {}): Promise<Messenger> => {
      const deadline = Date.now() + (c.timeoutMs ?? 120_000);
      for (;;) {
        const res = await r.api.open.getDeviceList({ accountId: opts.accountId, historyAfterVersion: 0n }).catch((err: unknown) => {
          if (isTransient(err)) return undefined;
          throw err;
        });
        if (res?.deviceList) {
          // First contact with our own account: verify the whole chain from version 1.
          const verified = verifyDeviceListChain(r.provider, { accountId: opts.accountId, history: res.history, current: res.deviceList });
          const mine = verified.list.devices.find((d) => Buffer.from(d.signingKey).equals(Buffer.from(keys.signingKey)));
          if (mine) {
            const nowMs = r.now();
            const policy = { ...defaultPrekeyPolicy, ...opts.prekeyPolicy };
            await opts.protocol.identity.setLocalIdentity(localIdentityOf(keys, mine.deviceId));
            const account = newAccountRecord(opts.accountId, mine.deviceId, opts.deviceName, opts.serverUrl, nowMs, policy);
            const m = new Messenger(account, opts, r, keys.signingSeed);
            await m.api.directory.uploadPrekeys(await initialPrekeys(r.provider, opts.protocol, policy, nowMs));
            // The account record last: a crash before this leaves a store that can link again.
            await opts.store.setAccount(account);
            await m.directory.trust(opts.accountId, verified);
            return m;
          }
        }
        if (Date.now() > deadline) throw new MessengerError("link_timeout", "this device was not linked in time");
        await sleep(c.pollMs ?? 250);
      }
    };
    return { code, complete };
  }

  /** This device. */
  get address(): DeviceRef {
    return { accountId: this.account.accountId, deviceId: this.account.deviceId };
  }

  get accountId(): string {
    return this.account.accountId;
  }

  /** Goes online: receive loop, outbox, prekey upkeep, directory watch. */
  start(): void {
    if (this.running || this.revoked) return;
    this.running = true;
    this.receiver.start();
    this.outbox.start();
    void this.prekeys.check();
    this.prekeyTimer = setInterval(() => void this.prekeys.check(), this.prekeyCheckIntervalMs);
    this.prekeyTimer.unref();
    void this.restartWatch();
  }

  /** Goes offline (the stores stay; sends keep queueing). */
  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.prekeyTimer);
    this.stopWatch();
    await Promise.all([this.receiver.stop(), this.outbox.stop()]);
    this.api.channel.close();
    await this.watch?.done;
  }

  /** Stops and ends every event iterator. */
  async close(): Promise<void> {
    await this.stop();
    this.bus.close();
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Resolves once the outbox is empty (everything queued reached the server). */
  flush(): Promise<void> {
    return this.outbox.idle();
  }

  /** Resolves once the receive stream has drained the mailbox backlog. */
  drained(): Promise<void> {
    return this.receiver.drained();
  }

  // ---------------------------------------------------------------- events

  /** Every event from now on, in order. */
  events(): AsyncIterableIterator<MessengerEvent> {
    return this.bus.subscribe();
  }

  on(listener: EventListener): () => void {
    return this.bus.on(listener);
  }

  /** Installs the handler for one Content body case (replacing any default). */
  registerContentHandler(bodyCase: ContentCase, handler: ContentHandler): void {
    this.handlers.set(bodyCase, handler);
  }

  /**
   * Installs the handler of mail whose entry for this device is empty: sender-key group
   * bodies, which the group layer authenticates and decrypts (docs/PROTOCOL.md, "Groups").
   */
  registerGroupBodyHandler(handler: (sender: DeviceRef, mail: MailboxMessage) => Promise<void>): void {
    this.groupBodyHandler = handler;
  }

  /**
   * Installs the group layer's membership check. Group receipts travel pairwise (1:1 path)
   * naming the group; with a check installed they are applied only when the sender is a
   * member (else reported as a protocol violation and dropped). Group texts, attachments and typing never travel
   * pairwise (real group messages are sender-key bodies) and are always dropped there.
   */
  registerGroupMembershipCheck(check: GroupMembershipCheck): void {
    this.groupMembership = check;
  }

  /** Emits an event to the app (for layers built on the Messenger, e.g. groups). */
  emitEvent(e: MessengerEvent): void {
    this.bus.emit(e);
  }

  // ---------------------------------------------------------------- devices

  /** Links a new device from its code (run on an existing device). Returns its address. */
  async linkDevice(code: string): Promise<DeviceRef> {
    let link;
    try {
      link = fromBinary(LinkCodeSchema, new Uint8Array(Buffer.from(code.trim(), "base64")));
    } catch (err) {
      throw new MessengerError("link_code_invalid", "link code does not parse", { cause: err });
    }
    if (link.accountId !== this.accountId) throw new MessengerError("link_code_invalid", `link code is for account ${link.accountId}, not ${this.accountId}`);
    if (!verifyDhKeySignature(this.provider, link.signingKey, link.dhKey, link.dhKeySignature)) {
      throw new MessengerError("link_code_invalid", "link code's dh_key_signature does not verify");
    }
    const signer = await this.signer();
    for (let attempt = 0; ; attempt++) {
      await this.directory.refresh(this.accountId);
      const current = (await this.trustedSigned(this.accountId))!;
      const change = linkDeviceChange(this.provider, current, signer, { signingKey: link.signingKey, dhKey: link.dhKey, dhKeySignature: link.dhKeySignature, name: link.name }, this.now());
      try {
        const res = await this.api.directory.linkDevice({ deviceList: change.deviceList });
        await this.directory.refresh(this.accountId);
        return { accountId: this.accountId, deviceId: res.device?.deviceId ?? change.deviceId };
      } catch (err) {
        // Another device changed the list at the same time: sign against the new version.
        if (attempt < 2 && isConcurrentChange(err)) continue;
        throw err;
      }
    }
  }

  /** Removes a device of this account (this one included). */
  async revokeDevice(deviceId: number): Promise<void> {
    const signer = await this.signer();
    for (let attempt = 0; ; attempt++) {
      await this.directory.refresh(this.accountId);
      const current = (await this.trustedSigned(this.accountId))!;
      const change = revokeDeviceChange(this.provider, current, signer, deviceId, this.now());
      try {
        await this.api.directory.revokeDevice({ deviceList: change });
        break;
      } catch (err) {
        if (attempt < 2 && isConcurrentChange(err)) continue;
        throw err;
      }
    }
    if (deviceId === this.address.deviceId) {
      this.onRevoked();
      return;
    }
    await this.directory.refresh(this.accountId);
  }

  /** The verified devices of an account (default: this one). */
  async devices(accountId = this.accountId, opts: { refresh?: boolean } = {}): Promise<DeviceInfo[]> {
    const list = await this.directory.devices(accountId, opts);
    return list.devices.map((d) => ({
      accountId,
      deviceId: d.deviceId,
      name: d.name,
      addedAtMs: Number(d.addedAtMs),
      isThisDevice: accountId === this.accountId && d.deviceId === this.address.deviceId,
    }));
  }

  /** The 60-digit safety number with a contact, in groups of five. */
  async safetyNumber(accountId: string): Promise<string> {
    const [mine, theirs] = await Promise.all([this.directory.devices(this.accountId), this.directory.devices(accountId)]);
    const keys = (l: DeviceList) => l.devices.map((d) => ({ signingKey: d.signingKey, dhKey: d.dhKey }));
    return formatSafetyNumber(safetyNumber(this.provider, { accountId: this.accountId, devices: keys(mine) }, { accountId, devices: keys(theirs) }));
  }

  // ---------------------------------------------------------------- sending

  /** Queues a text; it goes out now or when the server is reachable again. */
  async sendText(to: string, text: string, opts: { quoteMessageId?: string } = {}): Promise<StoredMessage> {
    const quote = opts.quoteMessageId ? new Uint8Array(Buffer.from(opts.quoteMessageId, "hex")) : new Uint8Array(0);
    return this.sendMessage(to, { case: "text", value: create(TextSchema, { body: text, quoteMessageId: quote }) }, { kind: "text", text, quoteMessageId: opts.quoteMessageId });
  }

  /**
   * Encrypts and uploads a file now (needs the server), then queues the message that
   * carries its key and digest.
   */
  async sendFile(to: string, data: Uint8Array, meta: AttachmentMeta): Promise<StoredMessage> {
    const info = await uploadAttachment(this.api, this.provider, data, meta);
    const pointer = attachmentPointer(info);
    return this.sendMessage(to, { case: "attachment", value: pointer }, { kind: "attachment", attachment: info });
  }

  /** Downloads an attachment, checks its digest and decrypts it. */
  downloadAttachment(info: AttachmentInfo): Promise<Uint8Array> {
    return downloadAttachment(this.api, this.provider, info);
  }

  private async sendMessage(to: string, body: Content["body"], stored: MessageBody): Promise<StoredMessage> {
    const messageId = this.provider.random(16);
    const sentAtMs = this.nextSentAt();
    const content = create(ContentSchema, { messageId, sentAtMs: BigInt(sentAtMs), conversation: direct(to), body });
    const message: StoredMessage = {
      id: toHex(messageId),
      conversation: directConversation(to),
      sender: this.address,
      outgoing: true,
      sentAtMs,
      storedAtMs: sentAtMs,
      body: stored,
      status: "queued",
      deliveredTo: [],
      readBy: [],
      read: true,
    };
    await this.store.putMessage(message);
    await this.outbox.enqueue({ messageId, content: toBinary(ContentSchema, content), to: [to], label: stored.kind, nowMs: sentAtMs });
    return message;
  }

  /**
   * Queues any Content for the devices of `to` plus this account's other devices (an empty
   * `to` reaches only this account's other devices). For content kinds built outside the
   * Messenger (e.g. groups). Returns the outbox item.
   */
  async sendContent(content: Content, to: string[], label: string): Promise<OutboxItem> {
    if (content.messageId.length === 0) content.messageId = this.provider.random(16);
    if (content.sentAtMs === 0n) content.sentAtMs = BigInt(this.nextSentAt());
    return this.outbox.enqueue({ messageId: content.messageId, content: toBinary(ContentSchema, content), to, label, nowMs: this.now() });
  }

  /**
   * Tells `to` (and this account's other devices) that the user is typing. Ephemeral: only
   * devices online now get it, nothing is stored or retried, and only devices with a session
   * are addressed (no one-time prekey is spent on a typing indicator). Returns false when
   * it could not be sent.
   */
  async setTyping(to: string, started: boolean): Promise<boolean> {
    try {
      const content = create(ContentSchema, { messageId: this.provider.random(16), sentAtMs: BigInt(this.now()), conversation: direct(to), body: { case: "typing", value: { started } } });
      const recipients = [];
      for (const accountId of new Set([to, this.accountId])) {
        for (const d of (await this.directory.devices(accountId)).devices) {
          const address = { accountId, deviceId: d.deviceId };
          if (accountId === this.accountId && d.deviceId === this.address.deviceId) continue;
          if (await this.cipher.hasSession(address)) recipients.push({ address });
        }
      }
      if (recipients.length === 0) return false;
      const enc = await this.cipher.encryptForDevices(content, recipients, { messageId: content.messageId });
      const res = await this.api.channel.send({
        messageId: enc.messageId,
        sharedBody: enc.sharedBody,
        entries: enc.entries.map((e) => ({ device: e.address, entry: e.entry })),
        ephemeral: true,
      });
      return res.outcome.case === "stored";
    } catch {
      return false;
    }
  }

  /**
   * Marks incoming messages of a 1:1 conversation read (all unread ones, or `messageIds`):
   * queues read receipts to the sender and a read sync to this account's other devices.
   * Returns how many messages changed.
   */
  async markRead(peer: string, messageIds?: string[]): Promise<number> {
    const conversation = directConversation(peer);
    const wanted = messageIds && new Set(messageIds);
    const changed: StoredMessage[] = [];
    for (const m of await this.store.listMessages(conversation)) {
      if (m.outgoing || m.read || (wanted && !wanted.has(m.id))) continue;
      m.read = true;
      await this.store.putMessage(m);
      changed.push(m);
    }
    if (changed.length === 0) return 0;
    const ids = changed.map((m) => new Uint8Array(Buffer.from(m.id, "hex")));
    for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
      await this.queueReceipt(peer, ReceiptType.READ, ids.slice(i, i + MAX_RECEIPT_IDS));
    }
    const marks = changed.map((m) => create(ReadMarkSchema, { conversation: direct(peer), senderAccountId: m.sender.accountId, messageId: new Uint8Array(Buffer.from(m.id, "hex")) }));
    await this.sendContent(create(ContentSchema, { conversation: direct(peer), body: { case: "sync", value: { kind: { case: "read", value: { marks } } } } }), [], "read-sync");
    return changed.length;
  }

  private queueReceipt(peer: string, type: ReceiptType, messageIds: Uint8Array[]): Promise<OutboxItem> {
    const content = create(ContentSchema, { conversation: direct(peer), body: { case: "receipt", value: { type, messageIds } } });
    return this.sendContent(content, [peer], type === ReceiptType.READ ? "read-receipt" : "delivery-receipt");
  }

  // ---------------------------------------------------------------- history

  /** A 1:1 conversation's history from the local store, ordered by sender time. */
  async history(peer: string, opts: { limit?: number } = {}): Promise<StoredMessage[]> {
    return this.conversationHistory(directConversation(peer), opts);
  }

  async conversationHistory(conversation: ConversationKey, opts: { limit?: number } = {}): Promise<StoredMessage[]> {
    const all = await this.store.listMessages(conversation);
    return opts.limit ? all.slice(-opts.limit) : all;
  }

  conversations(): Promise<ConversationKey[]> {
    return this.store.listConversations();
  }

  // ---------------------------------------------------------------- receiving

  /**
   * One mailbox message. Order: check the sending device against its verified list ->
   * decrypt (nothing committed) -> handler stores the content -> markSeen -> commit the
   * session. A failure before the commit leaves the entry decryptable, so the redelivery is
   * processed again (the store dedupes by message_id); mail seen before only finishes its
   * commit (a crash may have come between markSeen and the commit).
   */
  private async processMail(m: MailboxMessage): Promise<void> {
    if (!m.sender) return;
    const sender: DeviceRef = { accountId: m.sender.accountId, deviceId: m.sender.deviceId };
    if (m.messageId.length !== 16) return this.receiveProblem("malformed", m, sender, `message_id is ${m.messageId.length} bytes, not 16`);
    if (!(await this.isListedDevice(sender))) {
      return this.receiveProblem("unlisted-device", m, sender, `device ${sender.deviceId} is not in the verified device list of ${sender.accountId}`);
    }
    const seenKey = `${sender.accountId}.${toHex(m.messageId)}`;
    const seen = !m.ephemeral && (await this.store.isSeen(seenKey));
    if (m.entry.length === 0 && this.groupBodyHandler) {
      if (seen) return;
      // A sender-key group body: no pairwise entry to decrypt (groups/messenger-groups.ts).
      await this.groupBodyHandler(sender, m);
      if (!m.ephemeral) await this.store.markSeen(seenKey);
      return;
    }
    if (seen) return this.finishCommit(m, sender);
    let dec: PendingDecryption;
    try {
      dec = await this.decrypt(m, sender);
    } catch (err) {
      if (isTransient(err)) throw err;
      // Forged, or for a session we no longer have: drop it. (Duplicates: already committed.)
      if (!(err instanceof DuplicateMessageError)) {
        this.bus.emit({ type: "session-problem", from: sender, problem: "undecryptable", detail: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
      }
      return;
    }
    try {
      const ch = dec.channel;
      if (ch.status === "gap" && ch.gap) {
        this.bus.emit({ type: "session-problem", from: sender, problem: "channel-gap", detail: `channel sequences ${ch.gap.first}..${ch.gap.last} were skipped` });
      } else if (ch.status === "late") {
        this.bus.emit({ type: "session-problem", from: sender, problem: "channel-late", detail: `channel sequence ${ch.sequence} arrived late` });
      }
      const fromSelf = sender.accountId === this.accountId;
      const content = dec.content;
      const invalid = content && malformedContent(content);
      if (invalid) {
        this.receiveProblem("malformed", m, sender, invalid);
      } else {
        const bodyCase: ContentCase | undefined = content ? content.body.case : "senderKeyBody";
        const handler = bodyCase && this.handlers.get(bodyCase);
        if (handler) {
          await handler({ sender, fromSelf, content: content ?? create(ContentSchema), mail: m, decrypted: dec });
        } else if (content) {
          this.bus.emit({ type: "unhandled-content", from: sender, bodyCase: bodyCase ?? "none", content });
        }
      }
      if (!m.ephemeral) await this.store.markSeen(seenKey);
      await dec.commit();
    } finally {
      dec.discard();
    }
    if (dec.newSession) void this.prekeys.check();
  }

  /** Mail already stored and marked seen: commit its session step if a crash cut it off. */
  private async finishCommit(m: MailboxMessage, sender: DeviceRef): Promise<void> {
    let dec: PendingDecryption;
    try {
      dec = await this.cipher.beginDecrypt(m.entry, m.sharedBody, sender);
    } catch (err) {
      if (isTransient(err)) throw err;
      return; // Committed before (the usual case): a duplicate.
    }
    try {
      await dec.commit();
    } finally {
      dec.discard();
    }
  }

  /**
   * True when `sender` is in its account's verified device list (the cached one; fetched once
   * more when the device is not in it, e.g. a device linked since).
   */
  private async isListedDevice(sender: DeviceRef): Promise<boolean> {
    const listed = (l: DeviceList | undefined) => !!l && l.devices.some((d) => d.deviceId === sender.deviceId);
    if (listed(await this.directory.known(sender.accountId))) return true;
    return listed(await this.directory.refresh(sender.accountId));
  }

  private receiveProblem(problem: ReceiveProblem, m: MailboxMessage, from: DeviceRef, detail: string): void {
    this.bus.emit({ type: "receive-problem", problem, sequence: Number(m.sequence), from, detail });
  }

  /** Decrypts (uncommitted); an unknown sender identity triggers one refresh of the sender's device list. */
  private async decrypt(m: MailboxMessage, sender: DeviceRef): Promise<PendingDecryption> {
    try {
      return await this.cipher.beginDecrypt(m.entry, m.sharedBody, sender);
    } catch (err) {
      if (!(err instanceof UntrustedIdentityError)) throw err;
      await this.directory.refresh(sender.accountId);
      return this.cipher.beginDecrypt(m.entry, m.sharedBody, sender);
    }
  }

  /** The conversation a content belongs to, from this device's point of view. */
  private conversationOf(content: Content, sender: DeviceRef): ConversationKey {
    const c = content.conversation?.kind;
    if (c?.case === "groupId") return groupConversation(c.value);
    // A contact's 1:1 message belongs to the conversation with its (authenticated) sender;
    // a copy from this account's other device names the peer it was sent to.
    if (sender.accountId !== this.accountId) return directConversation(sender.accountId);
    return directConversation(c?.case === "accountId" ? c.value : sender.accountId);
  }

  /**
   * Pairwise (1:1) content naming a group conversation: real group messages arrive as
   * sender-key bodies, so a pairwise text, attachment or typing indicator for a group is a
   * forgery attempt by a non-member or a broken client. Reported (no plaintext), dropped.
   */
  private groupViolation(ctx: ContentContext, content: Content): boolean {
    if (content.conversation?.kind.case !== "groupId") return false;
    this.receiveProblem("protocol-violation", ctx.mail, ctx.sender, `a pairwise ${content.body.case ?? "empty"} content names a group conversation`);
    return true;
  }

  private async onMessageContent(ctx: ContentContext, contentOverride?: Content): Promise<void> {
    const content = contentOverride ?? ctx.content;
    if (this.groupViolation(ctx, content)) return;
    const id = toHex(content.messageId.length ? content.messageId : ctx.decrypted.messageId);
    const conversation = this.conversationOf(content, ctx.sender);
    if (await this.store.getMessage(conversation, id)) return;
    let body: MessageBody;
    if (content.body.case === "text") {
      const q = content.body.value.quoteMessageId;
      body = { kind: "text", text: content.body.value.body, ...(q.length ? { quoteMessageId: toHex(q) } : {}) };
    } else if (content.body.case === "attachment") {
      body = { kind: "attachment", attachment: attachmentInfoOf(content.body.value) };
    } else {
      return;
    }
    const message: StoredMessage = {
      id,
      conversation,
      sender: ctx.sender,
      outgoing: ctx.fromSelf,
      sentAtMs: Number(content.sentAtMs),
      storedAtMs: this.now(),
      serverTimestampMs: Number(ctx.mail.serverTimestampMs),
      body,
      status: ctx.fromSelf ? "sent" : "received",
      deliveredTo: [],
      readBy: [],
      read: ctx.fromSelf,
    };
    await this.store.putMessage(message);
    this.bus.emit({ type: "message", message });
    if (!ctx.fromSelf && this.autoDeliveryReceipts) {
      await this.queueReceipt(ctx.sender.accountId, ReceiptType.DELIVERED, [new Uint8Array(Buffer.from(id, "hex"))]);
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
    if (c?.case === "groupId" && this.groupMembership && !(await this.groupMembership(c.value, ctx.sender.accountId))) {
      this.receiveProblem("protocol-violation", ctx.mail, ctx.sender, "a receipt names a group the sender is not known to be a member of");
      return;
    }
    const conversation = this.conversationOf(ctx.content, ctx.sender);
    const from = `${ctx.sender.accountId}.${ctx.sender.deviceId}`;
    const ids: string[] = [];
    for (const raw of r.messageIds.slice(0, MAX_RECEIPT_IDS)) {
      const id = toHex(raw);
      ids.push(id);
      const m = await this.store.getMessage(conversation, id);
      if (!m || !m.outgoing) continue;
      const list = kind === "read" ? m.readBy : m.deliveredTo;
      if (!list.includes(from)) list.push(from);
      if (kind === "read" && !m.deliveredTo.includes(from)) m.deliveredTo.push(from);
      m.status = m.readBy.length > 0 ? "read" : m.deliveredTo.length > 0 ? "delivered" : m.status;
      await this.store.putMessage(m);
    }
    this.bus.emit({ type: "receipt", receipt: kind, conversation, from: ctx.sender, messageIds: ids });
  }

  private async onTyping(ctx: ContentContext): Promise<void> {
    if (ctx.fromSelf || ctx.content.body.case !== "typing") return;
    if (this.groupViolation(ctx, ctx.content)) return;
    this.bus.emit({ type: "typing", conversation: this.conversationOf(ctx.content, ctx.sender), from: ctx.sender, started: ctx.content.body.value.started });
  }

  private async onSync(ctx: ContentContext): Promise<void> {
    // Only this account's devices may speak for it.
    if (!ctx.fromSelf || ctx.content.body.case !== "sync") return;
    const kind = ctx.content.body.value.kind;
    if (kind.case === "sent" && kind.value.content) {
      await this.onMessageContent(ctx, kind.value.content);
    } else if (kind.case === "read") {
      const done: { conversation: ConversationKey; messageId: string }[] = [];
      for (const mark of kind.value.marks) {
        const c = mark.conversation?.kind;
        const conversation = c?.case === "groupId" ? groupConversation(c.value) : directConversation(c?.case === "accountId" ? c.value : mark.senderAccountId);
        const id = toHex(mark.messageId);
        const m = await this.store.getMessage(conversation, id);
        if (m && !m.read) {
          m.read = true;
          await this.store.putMessage(m);
        }
        done.push({ conversation, messageId: id });
      }
      this.bus.emit({ type: "read-sync", from: ctx.sender, messages: done });
    }
  }

  // ---------------------------------------------------------------- outbox callbacks

  private async onStored(item: OutboxItem, stored: Stored): Promise<void> {
    if (item.label !== "text" && item.label !== "attachment") return;
    const content = fromBinary(ContentSchema, item.content);
    const conversation = this.conversationOf(content, this.address);
    const m = await this.store.getMessage(conversation, toHex(item.messageId));
    if (m && m.status === "queued") {
      m.status = "sent";
      m.serverTimestampMs = Number(stored.serverTimestampMs);
      await this.store.putMessage(m);
    }
  }

  private async onFailed(item: OutboxItem, reason: string): Promise<void> {
    const content = fromBinary(ContentSchema, item.content);
    const m = await this.store.getMessage(this.conversationOf(content, this.address), toHex(item.messageId));
    if (m) {
      m.status = "failed";
      m.failure = reason;
      await this.store.putMessage(m);
    }
  }

  // ---------------------------------------------------------------- directory

  private onDirectoryEvent(e: MessengerEvent): void {
    this.bus.emit(e);
    if (e.type === "device-revoked" && e.self) this.onRevoked();
  }

  private onRevoked(): void {
    if (this.revoked) return;
    this.revoked = true;
    this.bus.emit({ type: "device-revoked", device: this.address, self: true });
    void this.stop();
  }

  /** Watches this account and every 1:1 contact; restarted when the contact set changes. */
  private async restartWatch(): Promise<void> {
    if (!this.watchEnabled || !this.running) return;
    const peers = (await this.store.listConversations()).map(directPeer).filter((p): p is string => !!p);
    const accounts = [...new Set([this.accountId, ...peers])].sort().slice(0, 256);
    const key = accounts.join(",");
    if (!this.running || (this.watch && this.watch.accounts === key)) return;
    this.stopWatch();
    const abort = new AbortController();
    const done = (async () => {
      let delay = 250;
      while (!abort.signal.aborted) {
        try {
          for await (const ev of this.api.directory.watchDirectory({ accountIds: accounts }, { signal: abort.signal })) {
            delay = 250;
            const cached = await this.directory.known(ev.accountId);
            const version = ev.deviceList ? versionOf(ev.deviceList.deviceList) : undefined;
            if (version !== undefined && (!cached || cached.version < version)) await this.directory.refresh(ev.accountId).catch(() => {});
          }
        } catch {
          // Reconnect below.
        }
        await sleep(delay, abort.signal);
        delay = Math.min(delay * 2, 10_000);
      }
    })();
    this.watch = { abort, accounts: key, done };
  }

  private stopWatch(): void {
    this.watch?.abort.abort();
    this.watch = undefined;
  }

  /** Watches contacts met since start (call after a first message to a new contact). */
  refreshWatch(): Promise<void> {
    return this.restartWatch();
  }

  // ---------------------------------------------------------------- helpers

  /**
   * sent_at_ms, strictly increasing per device: history orders by (sent_at_ms, sender,
   * message_id), so two messages written in the same millisecond keep their order.
   */
  private nextSentAt(): number {
    this.lastSentAtMs = Math.max(this.now(), this.lastSentAtMs + 1);
    return this.lastSentAtMs;
  }

  private async signer() {
    const local = await this.protocol.identity.getLocalIdentity();
    if (!local) throw new MessengerError("not_initialized", "no local identity");
    return { deviceId: this.address.deviceId, signingSeed: local.signingSeed };
  }

  private async trustedSigned(accountId: string) {
    const t = await this.store.getTrustedList(accountId);
    return t ? fromBinary(SignedDeviceListSchema, t.signed) : undefined;
  }
}

function direct(accountId: string) {
  return create(ConversationSchema, { kind: { case: "accountId", value: accountId } });
}

/**
 * What is wrong with the ids of a decrypted content (16-byte ids of the wrong length), or
 * undefined. Checked before any handler stores anything.
 */
function malformedContent(content: Content, depth = 0): string | undefined {
  const id16 = (b: Uint8Array, what: string, optional = false) => (b.length === 16 || (optional && b.length === 0) ? undefined : `${what} is ${b.length} bytes, not 16`);
  const c = content.conversation?.kind;
  const bad = content.messageId.length !== 0 ? id16(content.messageId, "message_id") : c?.case === "groupId" ? id16(c.value, "conversation.group_id") : undefined;
  if (bad) return bad;
  const b = content.body;
  switch (b.case) {
    case "text":
      return id16(b.value.quoteMessageId, "text.quote_message_id", true);
    case "receipt":
      for (const id of b.value.messageIds) if (id.length !== 16) return `receipt.message_ids has an id of ${id.length} bytes`;
      return undefined;
    case "sync": {
      const k = b.value.kind;
      if (k.case === "sent" && k.value.content) return depth > 0 ? "nested sync" : malformedContent(k.value.content, depth + 1);
      if (k.case === "read") {
        for (const mark of k.value.marks) {
          const mc = mark.conversation?.kind;
          const e = id16(mark.messageId, "read mark message_id") ?? (mc?.case === "groupId" ? id16(mc.value, "read mark group_id") : undefined);
          if (e) return e;
        }
      }
      return undefined;
    }
    case "senderKeyDistribution":
      return id16(b.value.groupId, "sender_key_distribution.group_id") ?? id16(b.value.distributionId, "sender_key_distribution.distribution_id");
    case "groupControl":
      return b.value.kind.case === "leave" ? id16(b.value.kind.value.groupId, "group_leave.group_id") : undefined;
    default:
      return undefined;
  }
}

function isConcurrentChange(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.FailedPrecondition;
}

function versionOf(deviceList: Uint8Array): bigint | undefined {
  try {
    return fromBinary(DeviceListSchema, deviceList).version;
  } catch {
    return undefined;
  }
}
