/**
 * Messenger: what an app uses, without touching crypto. One instance is one device of one
 * account. It owns the local store (history, outbox, cursor, trusted device lists), the
 * sessions (SessionCipher), the receive loop, the outbox, the directory cache and prekey
 * upkeep, and reports everything as typed events (core/events.ts).
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
import { SendRequestSchema, type SendResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import type { DeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { ContentSchema, ConversationSchema, ReadMarkSchema, ReceiptType, TextSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { fromHex, toHex } from "../crypto/bytes.js";
import { unrefTimer } from "../util/timers.js";
import type { CryptoProvider, RandomSource } from "../crypto/provider.js";
import { SessionCipher } from "../protocol/session-cipher.js";
import { createMemoryStores } from "../store/memory-store.js";
import type { ProtocolStores } from "../protocol/stores.js";
import { attachmentPointer, downloadAttachment, uploadAttachment, type AttachmentMeta } from "../transport/attachments.js";
import { openAccount, registerAccount, startLinking, type Resolved } from "./account-setup.js";
import { HISTORY_CONTENT_TYPE, HistoryTransfer, type HistoryHost } from "./history-transfer.js";
import { OwnDevices, type DeviceInfo } from "../directory/own-devices.js";
import { MailPipeline, type ContentCase, type ContentHandler } from "../delivery/mail-pipeline.js";
import { DirectContents, MAX_RECEIPT_IDS, conversationOf } from "./direct-contents.js";
import { ContactWatch } from "../directory/contact-watch.js";
import { verifySenderCertificate } from "../directory/sender-certificate.js";
import type { SenderCertificate } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import type { BackoffOptions } from "../util/backoff.js";
import { KeyTransparency, TransparencyError } from "../directory/key-transparency.js";
import { monitorOwnAccount } from "../directory/own-account-monitor.js";
import { ContactDirectory } from "../directory/contact-directory.js";
import {
  directConversation,
  outgoingMessage,
  type AccountRecord,
  type AttachmentInfo,
  type ConversationKey,
  type ConversationStore,
  type DeviceRef,
  type MessageBody,
  type OutboxItem,
  type SealedAccessRecord,
  type StoredMessage,
} from "../store/conversation-store.js";
import { MessengerCounters, type MessengerStats } from "./messenger-stats.js";
import { EventBus, type EventListener } from "./event-bus.js";
import type { MessengerEvent, ReceiveProblem } from "../core/events.js";
import { MemoryConversationStore } from "../store/memory-conversation-store.js";
import { MessengerError } from "../core/messenger-errors.js";
import { Outbox, type GroupSender } from "../delivery/outbox.js";
import { PrekeyMaintenance, defaultPrekeyPolicy, type PrekeyPolicy } from "../directory/prekey-maintenance.js";
import { ReceiveLoop } from "../delivery/receive-loop.js";
import { SealedSending, withoutAccount } from "../delivery/sealed-sending.js";
import { SealedReceiving } from "../delivery/sealed-receiving.js";
import { SealedAccessMode } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { ServerApi, TransportFactory } from "../transport/server-api.js";

/** The two stores a Messenger keeps: protocol state (keys, sessions) and conversation state. */
export interface MessengerStores {
  protocol: ProtocolStores;
  store: ConversationStore;
}

export function createMemoryMessengerStores(): MessengerStores {
  return { protocol: createMemoryStores(), store: new MemoryConversationStore() };
}

export interface MessengerOptions extends MessengerStores {
  serverUrl: string;
  /** Crypto provider (default: the platform's, node:crypto on Node and @noble in browsers, with `random` if given). */
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
  /**
   * Send 1:1 mail sealed (the server does not learn the sender) to accounts whose access key
   * this device holds (default true); others, and groups, get Send. See setSealedAccess for
   * who may send sealed mail to this device.
   */
  sealedSender?: boolean;
}

export type { ContentContext, ContentHandler, ContentCase } from "../delivery/mail-pipeline.js";

/** What the group layer may use of its device (Messenger.groupHost()). */
export interface GroupHost {
  readonly self: DeviceRef;
  random(n: number): Uint8Array;
  isRunning(): boolean;
  /** Messages of the conversation store. */
  messages: {
    get(conversation: ConversationKey, id: string): Promise<StoredMessage | undefined>;
    put(message: StoredMessage): Promise<void>;
    list(conversation: ConversationKey): Promise<StoredMessage[]>;
  };
  emit(e: MessengerEvent): void;
  /** Pairwise content through the outbox (sendContent), and waiting for one item. */
  sendContent(content: Content, to: string[], label: string): Promise<OutboxItem>;
  settled(item: OutboxItem): Promise<void>;
  /**
   * A group message into the same outbox (its own lane), sent by the registered group sender;
   * `attempted` resolves after its first attempt: its error when it failed for good, else undefined.
   */
  queueGroupMessage(groupId: Uint8Array, content: Content): Promise<{ item: OutboxItem; attempted: Promise<unknown> }>;
  setGroupSender(send: GroupSender): void;
  /** Everything queued has left the outbox (or it stopped). */
  flush(): Promise<void>;
  /** Pairwise content sent at once, outside the queue (from inside the group sender). */
  sendNow(content: Content, to: string[]): Promise<void>;
  /** One Send of a sender-key body to `devices` (empty entries), with known list versions. */
  sendSharedBody(messageId: Uint8Array, sharedBody: Uint8Array, devices: DeviceRef[]): Promise<SendResponse>;
  upload(data: Uint8Array, meta: AttachmentMeta): Promise<AttachmentInfo>;
  devices(accountId: string, opts?: { refresh?: boolean }): Promise<DeviceList>;
  signingSeed(): Promise<Uint8Array>;
}

/** Whether `accountId` is a member of the group `groupId` (16 bytes), as the group layer knows it. */
export type GroupMembershipCheck = (groupId: Uint8Array, accountId: string) => Promise<boolean>;

export type { DeviceInfo } from "../directory/own-devices.js";

/** A new device waiting to be linked: show `code`, then await `complete()`. */
export interface PendingLink {
  /** base64 of an envelope.v1.LinkCode (public keys only), valid once, for `validForMs`. */
  code: string;
  validForMs: number;
  /** Waits until an existing device linked this one, then sets it up. */
  complete(opts?: { timeoutMs?: number; pollMs?: number }): Promise<Messenger>;
}

/** A sender certificate is renewed this long before it expires. */
const CERTIFICATE_RENEW_MS = 60 * 60_000;

export class Messenger {
  readonly provider: CryptoProvider;
  readonly api: ServerApi;
  readonly directory: ContactDirectory;
  private readonly transparency: KeyTransparency;
  readonly cipher: SessionCipher;
  readonly store: ConversationStore;
  readonly protocol: ProtocolStores;
  private readonly now: () => number;
  private readonly bus = new EventBus();
  private readonly counters = new MessengerCounters();
  private readonly mail: MailPipeline;
  private ownDevicesInstance?: OwnDevices;
  private get ownDevices(): OwnDevices {
    return (this.ownDevicesInstance ??= new OwnDevices({
      self: this.address,
      provider: this.provider,
      api: this.api,
      directory: this.directory,
      store: this.store,
      signingSeed: () => this.signingSeed(),
      now: () => this.now(),
      onSelfRevoked: () => this.onRevoked(),
    }));
  }
  private historyTransferInstance?: HistoryTransfer;
  private get transfers(): HistoryTransfer {
    return (this.historyTransferInstance ??= new HistoryTransfer(this.historyHost()));
  }
  private readonly outbox: Outbox;
  private readonly sealed: SealedSending;
  private readonly receiver: ReceiveLoop;
  private readonly prekeys: PrekeyMaintenance;
  private readonly handlers = new Map<ContentCase, ContentHandler>();
  private groupBodyHandler?: (sender: DeviceRef, mail: MailboxMessage) => Promise<void>;
  private groupMembership?: GroupMembershipCheck;
  private readonly watchEnabled: boolean;
  private readonly prekeyCheckIntervalMs: number;
  private prekeyTimer?: ReturnType<typeof setInterval>;
  private readonly contactWatch: ContactWatch;
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
    this.bus.on((e) => this.counters.count(e));
    this.watchEnabled = opts.watchDirectory ?? true;
    this.prekeyCheckIntervalMs = opts.prekeyCheckIntervalMs ?? 3600_000;
    this.cipher = new SessionCipher(this.provider, this.protocol, this.address, { now: this.now, requireKnownIdentity: true });
    this.transparency = new KeyTransparency(this.api, this.provider, this.store);
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
      transparency: this.transparency,
    });
    this.account.sealedAccess ??= { mode: "contacts", accessKey: toHex(this.provider.random(16)) };
    this.sealed = new SealedSending({
      provider: this.provider,
      store: this.store,
      directory: this.directory,
      certificate: () => this.senderCertificate(),
      now: this.now,
      enabled: opts.sealedSender ?? true,
    });
    this.outbox = new Outbox({
      store: this.store,
      api: this.api,
      cipher: this.cipher,
      directory: this.directory,
      self: () => this.address,
      emit,
      onStored: (item, serverTimestampMs) => this.onStored(item, serverTimestampMs),
      onFailed: (item, reason) => this.onFailed(item, reason),
      onFatal: () => this.onRevoked(),
      backoff: opts.backoff,
      sealed: this.sealed,
      ownAccessKey: () => this.sharedAccessKey(),
      ownLogHead: () => this.transparency.latestHead(),
    });
    this.receiver = new ReceiveLoop({
      api: this.api,
      store: this.store,
      emit,
      process: (m) => this.mail.process(m),
      onFatal: (why) => {
        if (why === "replaced")
          emit({ type: "stopped", reason: "replaced", detail: "another process opened this device's mailbox stream (is the same store in use elsewhere?)" });
        else if (why.code === "store_damaged") emit({ type: "stopped", reason: "store-damaged", detail: why.message });
        else this.onRevoked();
      },
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
    const receiveProblem = (problem: ReceiveProblem, m: MailboxMessage, from: DeviceRef | undefined, detail: string) =>
      emit({ type: "receive-problem", problem, sequence: Number(m.sequence), from, detail });
    const contents = new DirectContents({
      accountId: this.accountId,
      store: this.store,
      now: this.now,
      emit,
      receiveProblem,
      autoDeliveryReceipts: opts.autoDeliveryReceipts ?? true,
      queueReceipt: (peer, type, ids) => this.queueReceipt(peer, type, ids),
      groupMembership: () => this.groupMembership,
      historyReceived: (pointer, fromDeviceId) => this.transfers.received(pointer, fromDeviceId),
    });
    for (const [bodyCase, handler] of contents.handlers()) this.handlers.set(bodyCase, handler);
    this.contactWatch = new ContactWatch({
      accountId: this.accountId,
      api: this.api,
      store: this.store,
      directory: this.directory,
      active: () => this.running && this.watchEnabled,
    });
    this.mail = new MailPipeline({
      accountId: this.accountId,
      store: this.store,
      cipher: this.cipher,
      directory: this.directory,
      handler: (bodyCase) => this.handlers.get(bodyCase),
      groupBodyHandler: () => this.groupBodyHandler,
      emit,
      receiveProblem,
      onNewSession: () => void this.prekeys.check(),
      sealed: new SealedReceiving({
        provider: this.provider,
        identity: () => this.protocol.identity.getLocalIdentity(),
        certificateKeys: async () => (await this.api.open.getCertificateKeys({})).keys,
        now: this.now,
      }),
      onAccessKey: (accountId, key) => this.sealed.remember(accountId, key),
      onLogHead: (from, head) =>
        void this.transparency.checkGossip(head).catch((err: unknown) => {
          if (err instanceof TransparencyError) {
            this.bus.emit({
              type: "directory-untrusted",
              accountId: from.accountId,
              problem: err.problem,
              detail: `tree head from ${from.accountId}/${from.deviceId}: ${err.message}`,
            });
          }
        }),
    });
  }

  // ---------------------------------------------------------------- lifecycle

  /** Registers a new account with this device as its first device. */
  static async createAccount(opts: MessengerOptions & { accountId: string; deviceName: string }): Promise<Messenger> {
    const s = await registerAccount(opts);
    const m = new Messenger(s.account, opts, s.resolved, s.signingSeed);
    await m.directory.trust(opts.accountId, s.trusted);
    return m;
  }

  /** Opens an existing device from its stores. */
  static async open(opts: MessengerOptions): Promise<Messenger> {
    const s = await openAccount(opts);
    return new Messenger(s.account, { ...opts, serverUrl: opts.serverUrl || s.account.serverUrl }, s.resolved, s.signingSeed);
  }

  /**
   * Starts linking this (new) device to an existing account: returns the code to show to a
   * device of the account (`linkDevice(code)` there) and a function that finishes the setup
   * once the link is in the account's signed device list.
   */
  static async startLink(opts: MessengerOptions & { accountId: string; deviceName: string }): Promise<PendingLink> {
    const link = await startLinking(opts);
    return {
      code: link.code,
      validForMs: link.validForMs,
      complete: async (c) => {
        const s = await link.linked(c);
        const m = new Messenger(s.account, opts, s.resolved, s.signingSeed);
        await m.api.directory.uploadPrekeys(s.prekeys);
        // The account record last: a crash before this leaves a store that can link again.
        await opts.store.setAccount(s.account);
        await m.directory.trust(opts.accountId, s.trusted);
        return m;
      },
    };
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
    this.transfers.resume();
    void this.prekeys.check();
    void this.registerSealedAccess().catch(() => {}); // tried again at the next start
    void this.monitorTransparency();
    this.prekeyTimer = setInterval(() => {
      void this.prekeys.check();
      void this.monitorTransparency();
    }, this.prekeyCheckIntervalMs);
    unrefTimer(this.prekeyTimer);
    void this.contactWatch.restart();
  }

  /** Goes offline (the stores stay; sends keep queueing). */
  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.prekeyTimer);
    const watchEnded = this.contactWatch.stop();
    await Promise.all([this.receiver.stop(), this.outbox.stop()]);
    this.api.channel.close();
    await watchEnded;
  }

  /** Stops and ends every event iterator. */
  async close(): Promise<void> {
    await this.stop();
    this.bus.close();
  }

  get isRunning(): boolean {
    return this.running;
  }

  /**
   * How this device is doing, for status displays and monitoring (no contents): the outbox
   * depth, and since this Messenger was opened: sends, retries, failures, messages received,
   * the last message's receive lag, the connection state.
   */
  async stats(): Promise<MessengerStats> {
    const kt = await this.store.getTransparency();
    return {
      ...this.counters.snapshot(),
      outboxDepth: (await this.store.listOutbox()).length,
      received: this.receiver.received,
      receiveLagMs: this.receiver.lastLagMs,
      transparency: kt && { logKey: toHex(kt.logKey), treeSize: kt.treeSize, signedAtMs: kt.timestampMs, monitoredSize: kt.monitored?.size },
    };
  }

  /** Resolves once one queued item left the outbox (sent or failed for good), or the Messenger stopped. */
  settled(item: OutboxItem): Promise<void> {
    return this.outbox.settled(item.seq);
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

  /**
   * What the group layer may use of this device (groups/messenger-groups.ts), and nothing
   * else: its messages in the conversation store, the outbox, attachments, the device lists,
   * the group Send, its signing seed.
   */
  groupHost(): GroupHost {
    return {
      self: this.address,
      random: (n) => this.provider.random(n),
      isRunning: () => this.running,
      messages: { get: (c, id) => this.store.getMessage(c, id), put: (m) => this.store.putMessage(m), list: (c) => this.store.listMessages(c) },
      emit: (e) => this.bus.emit(e),
      sendContent: (content, to, label) => this.sendContent(content, to, label),
      settled: (item) => this.settled(item),
      queueGroupMessage: (groupId, content) =>
        this.outbox.enqueueTracked({
          messageId: content.messageId,
          content: toBinary(ContentSchema, content),
          to: [],
          label: "group",
          nowMs: this.now(),
          groupId,
        }),
      setGroupSender: (send) => this.outbox.setGroupSender(send),
      flush: () => this.flush(),
      sendNow: (content, to) => {
        this.stamp(content);
        return this.outbox.sendNow({ messageId: content.messageId, content: toBinary(ContentSchema, content), to });
      },
      sendSharedBody: (messageId, sharedBody, devices) => this.outbox.sendSharedBody(messageId, sharedBody, devices),
      upload: (data, meta) => uploadAttachment(this.api, this.provider, data, meta),
      devices: (accountId, opts) => this.directory.devices(accountId, opts),
      signingSeed: () => this.signingSeed(),
    };
  }

  /** Installs the group layer's part of history transfer (its group states travel with the archive). */
  registerHistoryGroups(ext: { export(): Promise<Uint8Array[]>; import(states: Uint8Array[], from: DeviceRef): Promise<void> }): void {
    this.historyGroups = ext;
  }
  private historyGroups?: { export(): Promise<Uint8Array[]>; import(states: Uint8Array[], from: DeviceRef): Promise<void> };

  /** Emits an event to the app (for layers built on the Messenger, e.g. groups). */
  emitEvent(e: MessengerEvent): void {
    this.bus.emit(e);
  }

  // ---------------------------------------------------------------- devices

  /** Links a new device from its code (run on an existing device). Returns its address. */
  linkDevice(code: string): Promise<DeviceRef> {
    return this.ownDevices.link(code);
  }

  /**
   * Sends this account's history to a newly linked device of it (the user consented):
   * history-transfer.ts. Resolves with the outbox id of the sync message that carries it
   * (its `sent` / `send-failed` event says how it went).
   */
  transferHistory(deviceId: number, opts: { sinceMs?: number; waitMs?: number } = {}): Promise<{ messageId: string; messages: number; bytes: number }> {
    return this.transfers.send(deviceId, opts);
  }

  /** What the history transfer needs from this device, and nothing else. */
  private historyHost(): HistoryHost {
    return {
      accountId: this.accountId,
      deviceId: this.address.deviceId,
      store: this.store,
      account: () => this.account,
      saveAccount: () => this.store.setAccount(this.account),
      now: () => this.now(),
      running: () => this.running,
      emit: (e) => this.bus.emit(e),
      reachable: async (deviceId) => {
        const listed = (await this.directory.devices(this.accountId, { refresh: true })).devices.some((d) => d.deviceId === deviceId);
        if (!listed) return "unlisted";
        if (await this.cipher.hasSession({ accountId: this.accountId, deviceId })) return "yes";
        const bundles = await this.directory.claim(this.accountId, [deviceId]).catch((err: unknown) => {
          // FAILED_PRECONDITION: no prekeys uploaded yet (it is still setting up).
          if (err instanceof ConnectError && err.code === Code.FailedPrecondition) return undefined;
          throw err;
        });
        return bundles?.has(deviceId) ? "yes" : "no";
      },
      upload: (bytes) => uploadAttachment(this.api, this.provider, bytes, { contentType: HISTORY_CONTENT_TYPE, fileName: "history.json" }),
      download: (info) => downloadAttachment(this.api, this.provider, info),
      exportGroups: async () => (await this.historyGroups?.export()) ?? [],
      importGroups: async (states, from) => {
        await this.historyGroups?.import(states, from);
      },
      sendToOwnDevices: async (history) =>
        toHex(
          (await this.sendContent(create(ContentSchema, { body: { case: "sync", value: { kind: { case: "history", value: history } } } }), [], "history"))
            .messageId,
        ),
    };
  }

  /** Removes a device of this account (this one included). */
  revokeDevice(deviceId: number): Promise<void> {
    return this.ownDevices.revoke(deviceId);
  }

  /** The verified devices of an account (default: this one). */
  devices(accountId = this.accountId, opts: { refresh?: boolean } = {}): Promise<DeviceInfo[]> {
    return this.ownDevices.list(accountId, opts);
  }

  /** The 60-digit safety number with a contact, in groups of five. */
  safetyNumber(accountId: string): Promise<string> {
    return this.ownDevices.safetyNumber(accountId);
  }

  /**
   * This device's sender certificate (for sealed sending): fetched from the server, checked
   * against the server's certificate keys to name this device and its identity key, and kept
   * until an hour before it expires.
   */
  async senderCertificate(): Promise<SenderCertificate> {
    const now = this.now();
    if (this.certificate && this.certificate.expiresAtMs - CERTIFICATE_RENEW_MS > now) return this.certificate.certificate;
    const [{ keys }, { certificate }] = await Promise.all([this.api.open.getCertificateKeys({}), this.api.directory.getSenderCertificate({})]);
    if (!certificate) throw new MessengerError("certificate_invalid", "the server answered without a certificate");
    const identityKey = (await this.protocol.identity.getLocalIdentity())?.signingKey;
    try {
      const v = await verifySenderCertificate(this.provider, certificate, keys, now, { ...this.address, identityKey });
      this.certificate = { certificate, expiresAtMs: v.expiresAtMs };
      return certificate;
    } catch (err) {
      throw new MessengerError(
        "certificate_invalid",
        `the server's sender certificate is not valid for this device: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }
  private certificate?: { certificate: SenderCertificate; expiresAtMs: number };

  /**
   * Who may send this device sealed mail (the server then takes SendSealed to this account):
   * "contacts" (the default: whoever got this device's access key inside its messages),
   * "anyone", or "off". Takes effect when the server confirms it.
   */
  async setSealedAccess(mode: SealedAccessRecord["mode"]): Promise<void> {
    this.account.sealedAccess = { ...this.account.sealedAccess!, mode };
    await this.store.setAccount(this.account);
    await this.registerSealedAccess();
  }

  /**
   * Draws a new access key and registers it: everyone holding the old one (every contact this
   * device ever wrote to) is refused from now on and falls back to Send, until this device
   * writes to them again (its content carries the new key). The way to stop a contact
   * sending sealed mail to this device.
   */
  async rotateAccessKey(): Promise<void> {
    this.account.sealedAccess = { ...this.account.sealedAccess!, accessKey: toHex(this.provider.random(16)), registered: undefined };
    await this.store.setAccount(this.account);
    await this.registerSealedAccess();
  }

  /** This device's sealed-mail setting as the server has it (registered) and as set here (mode). */
  sealedAccess(): { mode: SealedAccessRecord["mode"]; registered: boolean } {
    const a = this.account.sealedAccess!;
    return { mode: a.mode, registered: a.registered === a.mode };
  }

  /** Tells the server this device's setting and access-key digest, unless it has them already. */
  private async registerSealedAccess(): Promise<void> {
    const a = this.account.sealedAccess!;
    if (a.registered === a.mode) return;
    const mode = { off: SealedAccessMode.DISABLED, contacts: SealedAccessMode.CONTACTS, anyone: SealedAccessMode.ANYONE }[a.mode];
    const accessKeySha256 = a.mode === "contacts" ? this.provider.sha256(fromHex(a.accessKey)) : new Uint8Array(0);
    await this.api.directory.setSealedAccess({ mode, accessKeySha256 });
    this.account.sealedAccess = { ...this.account.sealedAccess!, registered: a.mode };
    await this.store.setAccount(this.account);
  }

  /** The access key 1:1 content carries: only once the server knows it (else a contact's sealed mail would be refused). */
  private sharedAccessKey(): Uint8Array | undefined {
    const a = this.account.sealedAccess!;
    return a.mode !== "off" && a.registered === a.mode ? fromHex(a.accessKey) : undefined;
  }

  // ---------------------------------------------------------------- sending

  /** Queues a text; it goes out now or when the server is reachable again. */
  async sendText(to: string, text: string, opts: { quoteMessageId?: string } = {}): Promise<StoredMessage> {
    const quote = opts.quoteMessageId ? fromHex(opts.quoteMessageId) : new Uint8Array(0);
    return this.sendMessage(
      to,
      { case: "text", value: create(TextSchema, { body: text, quoteMessageId: quote }) },
      { kind: "text", text, quoteMessageId: opts.quoteMessageId },
    );
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
    const message = outgoingMessage({ id: toHex(messageId), conversation: directConversation(to), sender: this.address, sentAtMs, body: stored });
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
    this.stamp(content);
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
      const content = create(ContentSchema, {
        messageId: this.provider.random(16),
        sentAtMs: BigInt(this.now()),
        conversation: direct(to),
        body: { case: "typing", value: { started } },
      });
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
      const req = create(SendRequestSchema, {
        messageId: enc.messageId,
        sharedBody: enc.sharedBody,
        entries: enc.entries.map((e) => ({ device: e.address, entry: e.entry })),
        ephemeral: true,
      });
      // Sealed like any 1:1 mail when this device holds the contact's key; this account's other devices get theirs with Send.
      const key = to !== this.accountId ? await this.sealed.accessKey(to) : undefined;
      const sealed = key && (await this.sealed.seal(req, to, key, false));
      const ours = sealed ? withoutAccount(req, to) : req;
      const results = await Promise.all([sealed && this.api.sealed.sendSealed(sealed), ours && this.api.channel.send(ours)]);
      return results.every((r) => !r || r.outcome.case === "stored");
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
    const ids = changed.map((m) => fromHex(m.id));
    for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
      await this.queueReceipt(peer, ReceiptType.READ, ids.slice(i, i + MAX_RECEIPT_IDS));
    }
    const marks = changed.map((m) => create(ReadMarkSchema, { conversation: direct(peer), senderAccountId: m.sender.accountId, messageId: fromHex(m.id) }));
    await this.sendContent(
      create(ContentSchema, { conversation: direct(peer), body: { case: "sync", value: { kind: { case: "read", value: { marks } } } } }),
      [],
      "read-sync",
    );
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

  // ---------------------------------------------------------------- outbox callbacks

  private async onStored(item: OutboxItem, serverTimestampMs: number): Promise<void> {
    if (!item.groupId && item.label !== "text" && item.label !== "attachment") return;
    const content = fromBinary(ContentSchema, item.content);
    const conversation = conversationOf(content, this.address, this.accountId);
    const m = await this.store.getMessage(conversation, toHex(item.messageId));
    if (m && m.status === "queued") {
      m.status = "sent";
      m.serverTimestampMs = serverTimestampMs;
      if (item.sealedStored) m.sealed = true;
      await this.store.putMessage(m);
    }
  }

  private async onFailed(item: OutboxItem, reason: string): Promise<void> {
    const content = fromBinary(ContentSchema, item.content);
    const m = await this.store.getMessage(conversationOf(content, this.address, this.accountId), toHex(item.messageId));
    if (m) {
      m.status = "failed";
      m.failure = reason;
      await this.store.putMessage(m);
    }
  }

  // ---------------------------------------------------------------- directory

  /**
   * Reads the key transparency log for versions of this account it never made; a finding is
   * a directory-untrusted event (problem unknown-own-version, or a log that lies). Network
   * failures wait for the next run.
   */
  async monitorTransparency(): Promise<void> {
    try {
      await monitorOwnAccount(this.api, this.provider, this.transparency, this.accountId);
    } catch (err) {
      if (err instanceof TransparencyError)
        this.bus.emit({ type: "directory-untrusted", accountId: this.accountId, problem: err.problem, detail: err.message });
    }
  }

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

  /** Watches contacts met since start (call after a first message to a new contact). */
  refreshWatch(): Promise<void> {
    return this.contactWatch.restart();
  }

  // ---------------------------------------------------------------- helpers

  /** This device's Ed25519 signing seed: it signs device-list changes and group state. */
  private async signingSeed(): Promise<Uint8Array> {
    const local = await this.protocol.identity.getLocalIdentity();
    if (!local) throw new MessengerError("not_initialized", "no local identity");
    return local.signingSeed;
  }

  /** Gives outgoing content its message_id and sent_at_ms where the caller left them unset. */
  private stamp(content: Content): void {
    if (content.messageId.length === 0) content.messageId = this.provider.random(16);
    if (content.sentAtMs === 0n) content.sentAtMs = BigInt(this.nextSentAt());
  }

  /**
   * sent_at_ms, strictly increasing per device: history orders by (sent_at_ms, sender,
   * message_id), so two messages written in the same millisecond keep their order.
   */
  private nextSentAt(): number {
    this.lastSentAtMs = Math.max(this.now(), this.lastSentAtMs + 1);
    return this.lastSentAtMs;
  }
}

function direct(accountId: string) {
  return create(ConversationSchema, { kind: { case: "accountId", value: accountId } });
}
