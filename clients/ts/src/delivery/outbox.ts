/**
 * The durable outbox: every Send (messages, receipts, read syncs) is queued here first and
 * goes out strictly in queue order, one at a time, until the server answers Stored.
 *
 * Exactly once: an item gets its message_id when queued, and its encrypted SendRequest is
 * saved before the first attempt, so every retry (after a network error, a server restart or
 * an app crash) resends the same bytes with the same id and the server's idempotency
 * (sp_sends, Nats-Msg-Id) stores it once. Only MismatchedDevices (nothing stored) makes the
 * outbox refresh the device lists and encrypt again, still with the same message_id.
 *
 * Ordering rule: items are ordered *per conversation* (per recipient set, `lane`), not
 * globally. Items of one lane go out strictly in queue order; an item that is stuck never
 * holds back a later item of another lane (a message to a third person never waits behind
 * a stuck one to someone else).
 *
 * Failures: when the environment fails (server or network unreachable, disk:
 * failure-kinds.ts) the whole queue waits and retries with backoff, without limit. A
 * permanent rejection (the server rejected the request) fails that one item at once. Any
 * other failure (e.g. FAILED_PRECONDITION, device lists that keep changing) blocks only its
 * lane and is retried with backoff at most MAX_ITEM_ATTEMPTS times, then the item fails.
 *
 * Devices without prekeys on the server (just linked, nothing uploaded yet) and without a
 * session are left out of a fan-out: nobody can reach them yet, and the server does not
 * count them as missing.
 *
 * Group messages are items too (`groupId` set, one lane per group): the group layer's sender
 * encrypts them under its sender key and makes the Send (distributing keys first, with
 * sendNow, since it runs inside this queue); they wait while no group layer is attached.
 */
import { context, trace, type Context } from "@opentelemetry/api";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AccountVersionSchema,
  SendEntrySchema,
  SendRequestSchema,
  type SendRequest,
  type SendResponse,
  type SendSealedResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import type { KeyBundle } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { Recipient, SessionCipher } from "../protocol/session-cipher.js";
import { Backoff, sleep, type BackoffOptions } from "../util/backoff.js";
import type { ContactDirectory } from "../directory/contact-directory.js";
import { groupConversation, type ConversationStore, type DeviceRef, type OutboxItem } from "../store/conversation-store.js";
import type { MessengerEvent } from "../core/events.js";
import { failureKind } from "../transport/failure-kinds.js";
import type { SignedTreeHead } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import { toHex } from "../crypto/bytes.js";
import { type MessengerError, messengerErrorOf } from "../core/messenger-errors.js";
import type { ServerApi } from "../transport/server-api.js";
import { withoutAccount, type SealedSending } from "./sealed-sending.js";

/** Re-encryptions after MismatchedDevices before the item counts as a transient failure. */
const MAX_MISMATCH_ROUNDS = 4;
/** Attempts of one item that fail for item-specific (not environment) reasons before it fails for good. */
export const MAX_ITEM_ATTEMPTS = 6;

export interface OutboxDeps {
  store: ConversationStore;
  api: ServerApi;
  cipher: SessionCipher;
  directory: ContactDirectory;
  self: () => DeviceRef;
  emit: (e: MessengerEvent) => void;
  /** Called after the server stored an item (before it leaves the outbox). */
  onStored: (item: OutboxItem, serverTimestampMs: number) => Promise<void>;
  /** Called when an item failed for good (before it leaves the outbox). */
  onFailed: (item: OutboxItem, reason: string) => Promise<void>;
  /** A fatal error (this device was revoked): the outbox stops. */
  onFatal: (err: MessengerError) => void;
  backoff?: BackoffOptions;
  /** Sealed sending of 1:1 items (absent: everything goes with Send). */
  sealed?: SealedSending;
  /** This device's access key, shared in 1:1 content to other accounts (undefined: not shared). */
  ownAccessKey?: () => Uint8Array | undefined;
  /** The largest key transparency head this device verified, gossiped on texts and files to other accounts. */
  ownLogHead?: () => Promise<SignedTreeHead | undefined>;
}

export interface EnqueueInput {
  messageId: Uint8Array;
  content: Uint8Array;
  to: string[];
  label: string;
  nowMs: number;
  /** A group message (see OutboxItem.groupId). */
  groupId?: Uint8Array;
}

/**
 * Sends one group item (Outbox.setGroupSender): stored, or refused by the group layer (not a
 * member, admins only, ...: the item fails at once); throws as a Send would (retried).
 */
export type GroupSender = (item: OutboxItem) => Promise<{ serverTimestampMs: number; devices: number } | { refused: Error }>;

/** A group item its sender refused, carrying the refusal (named and worded as it is). */
class GroupRefusal extends Error {
  constructor(readonly refusal: Error) {
    super(refusal.message);
    this.name = refusal.name;
  }
}

export class Outbox {
  private nextSeq?: number;
  private groupSender?: GroupSender;
  /** Callers waiting for the first attempt of an item (enqueueTracked), by seq. */
  private readonly attemptWaiters = new Map<number, ((failure: unknown) => void)[]>();
  private readonly traceContexts = new Map<number, Context>();
  private running?: Promise<void>;
  private again = false;
  private stopped = true;
  private abort = new AbortController();
  private readonly backoff: Backoff;
  private idleWaiters: (() => void)[] = [];
  /** Item-specific failures by item seq (this run), and when each lane may be tried again. */
  private readonly attempts = new Map<number, number>();
  private readonly laneRetry = new Map<string, { at: number; backoff: Backoff }>();
  /** Ends the current wait early (a new item may be in a lane that is not blocked). */
  private wake?: () => void;

  constructor(private readonly d: OutboxDeps) {
    this.backoff = new Backoff(d.backoff);
  }

  /** Queues an item durably; it goes out when the outbox runs. */
  async enqueue(input: EnqueueInput): Promise<OutboxItem> {
    return (await this.add(input, false)).item;
  }

  /**
   * Queues an item as enqueue() does, and returns with it a promise of its first attempt
   * (registered before the item can be tried, so a quick refusal is never missed): the error
   * when it failed for good, else undefined (sent, or kept for a retry; at once when stopped).
   */
  enqueueTracked(input: EnqueueInput): Promise<{ item: OutboxItem; attempted: Promise<unknown> }> {
    return this.add(input, true);
  }

  private async add(input: EnqueueInput, track: boolean): Promise<{ item: OutboxItem; attempted: Promise<unknown> }> {
    if (this.nextSeq === undefined) {
      const items = await this.d.store.listOutbox();
      this.nextSeq = (items.at(-1)?.seq ?? 0) + 1;
    }
    const item: OutboxItem = {
      seq: this.nextSeq++,
      messageId: input.messageId,
      content: input.content,
      to: input.to,
      label: input.label,
      createdAtMs: input.nowMs,
    };
    if (input.groupId) item.groupId = input.groupId;
    // The app's trace context (if it traces) goes with the item's Sends; in memory only.
    if (trace.getSpan(context.active())) this.traceContexts.set(item.seq, context.active());
    await this.d.store.putOutbox(item);
    let attempted: Promise<unknown> = Promise.resolve(undefined);
    if (track && !this.stopped) {
      attempted = new Promise((resolve) => {
        const list = this.attemptWaiters.get(item.seq) ?? [];
        list.push(resolve);
        this.attemptWaiters.set(item.seq, list);
      });
    }
    this.kick();
    return { item, attempted };
  }

  /** Installs the group layer's sender; group items queued before go out from now on. */
  setGroupSender(send: GroupSender): void {
    this.groupSender = send;
    this.kick();
  }

  private attemptDone(seq: number, failure?: unknown): void {
    const list = this.attemptWaiters.get(seq);
    this.attemptWaiters.delete(seq);
    for (const r of list ?? []) r(failure);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.running;
    this.notifyIdle(); // idle() and settled() waiters return once stopped
    for (const seq of [...this.attemptWaiters.keys()]) this.attemptDone(seq);
  }

  /** Runs the queue (again) soon. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      this.wake?.();
      return;
    }
    this.running = this.drain().finally(() => {
      this.running = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        this.kick();
      } else {
        this.notifyIdle();
      }
    });
  }

  /** Resolves when the outbox is empty (or stopped). */
  async idle(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      if (!this.running && (await this.d.store.listOutbox()).length === 0) return;
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
  }

  /** Resolves when item `seq` has left the outbox (sent, or failed for good), or the outbox stopped. */
  async settled(seq: number): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      if (!(await this.d.store.listOutbox()).some((i) => i.seq === seq)) return;
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
  }

  private notifyIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }

  private async drain(): Promise<void> {
    while (!this.stopped) {
      this.again = false;
      const items = await this.d.store.listOutbox();
      if (items.length === 0) return;
      const blocked = new Set<string>();
      let progressed = false;
      let environment = false;
      let nextRetryAt = Infinity;
      for (const item of items) {
        if (this.stopped) return;
        const lane = laneOf(item);
        if (blocked.has(lane)) continue;
        if (item.groupId && !this.groupSender) {
          blocked.add(lane); // no group layer attached yet: the item waits for setGroupSender
          continue;
        }
        const retry = this.laneRetry.get(lane);
        if (retry && retry.at > Date.now()) {
          blocked.add(lane);
          nextRetryAt = Math.min(nextRetryAt, retry.at);
          continue;
        }
        try {
          await this.process(item);
          this.backoff.reset();
          this.attempts.delete(item.seq);
          this.laneRetry.delete(lane);
          this.attemptDone(item.seq);
          progressed = true;
        } catch (err) {
          const fatal = messengerErrorOf(err);
          if (fatal?.code === "device_revoked") {
            this.stopped = true;
            this.d.onFatal(fatal);
            return;
          }
          const refusal = err instanceof GroupRefusal ? err.refusal : undefined;
          const kind = refusal ? "permanent" : failureKind(err);
          const transient = kind !== "permanent";
          if (transient) this.attemptDone(item.seq);
          const retryReason = () => (err instanceof Error ? `${err.name}: ${err.message}` : String(err));
          if (kind === "environment") {
            this.d.emit({ type: "send-retry", messageId: toHex(item.messageId), label: item.label, reason: retryReason() });
            environment = true;
            break;
          }
          const n = (this.attempts.get(item.seq) ?? 0) + 1;
          this.attempts.set(item.seq, n);
          if (transient && n < MAX_ITEM_ATTEMPTS) {
            this.d.emit({ type: "send-retry", messageId: toHex(item.messageId), label: item.label, reason: retryReason() });
            // Only this lane waits; later items of other lanes go on.
            const r = retry ?? { at: 0, backoff: new Backoff(this.d.backoff) };
            r.at = Date.now() + r.backoff.next();
            this.laneRetry.set(lane, r);
            nextRetryAt = Math.min(nextRetryAt, r.at);
            blocked.add(lane);
            continue;
          }
          const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
          this.attempts.delete(item.seq);
          this.laneRetry.delete(lane);
          await this.d.onFailed(item, reason);
          await this.d.store.removeOutbox(item.seq);
          this.notifyIdle(); // waiters on one item (settled) look again
          this.traceContexts.delete(item.seq);
          this.d.emit({ type: "send-failed", messageId: toHex(item.messageId), label: item.label, reason });
          this.attemptDone(item.seq, refusal ?? (transient ? new Error(reason) : err));
          progressed = true;
        }
      }
      if (environment) {
        this.notifyIdle();
        await this.nap(this.backoff.next());
      } else if (!progressed) {
        this.notifyIdle();
        await this.nap(Math.max(10, (nextRetryAt === Infinity ? Date.now() : nextRetryAt) - Date.now()));
      }
    }
  }

  /** Waits `ms`, or less when stopped or kicked (enqueue). */
  private async nap(ms: number): Promise<void> {
    if (this.again) return;
    const woken = new AbortController();
    this.wake = () => woken.abort();
    const onStop = () => woken.abort();
    this.abort.signal.addEventListener("abort", onStop, { once: true });
    try {
      await sleep(ms, woken.signal);
    } finally {
      this.abort.signal.removeEventListener("abort", onStop);
      this.wake = undefined;
    }
  }

  private process(item: OutboxItem): Promise<void> {
    const ctx = this.traceContexts.get(item.seq);
    if (!ctx) return this.sendItem(item);
    // Kept for retries; dropped once the item is sent (or failed for good, below).
    return context.with(ctx, () => this.sendItem(item)).then(() => void this.traceContexts.delete(item.seq));
  }

  private async sendItem(item: OutboxItem): Promise<void> {
    if (item.groupId && this.groupSender) {
      const res = await this.groupSender(item);
      if ("refused" in res) throw new GroupRefusal(res.refused);
      await this.finish(item, res.serverTimestampMs, res.devices);
      return;
    }
    for (let round = 0; round < MAX_MISMATCH_ROUNDS; round++) {
      // A request saved by an earlier attempt may have been stored already: say it is a retry.
      const retry = !!item.request;
      if (!item.request) {
        // Once the recipient's part is stored (sealed), only this account's other devices are left.
        const req = await this.encrypt(item, { ownOnly: !!item.sealedStored });
        if (!req) {
          if (item.sealedStored) return this.finish(item, item.sealedStored.serverTimestampMs, item.sealedStored.devices);
          // Nobody to send to (own devices only, and this account has no other device).
          await this.d.store.removeOutbox(item.seq);
          this.notifyIdle(); // waiters on one item (settled) look again
          return;
        }
        item.request = toBinary(SendRequestSchema, req);
        await this.d.store.putOutbox(item);
      }
      const peer = this.sealablePeer(item);
      if (peer && !item.sealedStored) {
        const sealed = await this.sendSealedPart(item, peer, retry);
        if (sealed === "done") return;
        if (sealed === "again") continue;
      }
      const req = fromBinary(SendRequestSchema, item.request!);
      const res = await this.d.api.channel.send({ ...req, retry });
      if (res.outcome.case === "stored") {
        const s = item.sealedStored;
        await this.finish(item, s ? s.serverTimestampMs : Number(res.outcome.value.serverTimestampMs), res.outcome.value.entries.length + (s?.devices ?? 0));
        return;
      }
      if (res.outcome.case === "mismatchedDevices") {
        await this.refreshMismatched(res.outcome.value.accounts);
        item.request = undefined;
        await this.d.store.putOutbox(item);
        continue;
      }
      throw new ConnectError("Send answered no outcome", Code.Internal);
    }
    throw new ConnectError("device lists kept changing while sending; retrying later", Code.Aborted);
  }

  /** The one other account of a 1:1 item, when it may go sealed (this device holds its access key, no refusal yet). */
  private sealablePeer(item: OutboxItem): string | undefined {
    if (!this.d.sealed || item.groupId || item.unsealed || item.to.length !== 1 || item.to[0] === this.d.self().accountId) return undefined;
    return item.to[0];
  }

  /**
   * Sends the recipient's entries of item.request with SendSealed. Stored: item.request keeps
   * only this account's other devices ("rest": the caller sends them with Send; "done" when
   * there are none). "again": the caller makes the request anew (MismatchedDevices: lists
   * refreshed; or the server refused the key: the item falls back to Send, which is reported).
   * "rest" also when there is no key or nothing for the peer: the whole request goes with Send.
   */
  private async sendSealedPart(item: OutboxItem, peer: string, retry: boolean): Promise<"done" | "rest" | "again"> {
    const sealed = this.d.sealed!;
    const key = await sealed.accessKey(peer);
    const req = fromBinary(SendRequestSchema, item.request!);
    if (!key) return "rest";
    let res: SendSealedResponse;
    try {
      const request = await sealed.seal(req, peer, key, retry);
      // No device of the peer to reach (none has prekeys yet): the request goes with Send as it is.
      if (!request) return "rest";
      res = await this.d.api.sealed.sendSealed(request);
    } catch (err) {
      if (!(err instanceof ConnectError && (err.code === Code.PermissionDenied || err.code === Code.Unimplemented))) throw err;
      // Refused (the key was rotated, or the account takes no sealed mail any more): send it with Send.
      await sealed.forget(peer);
      item.unsealed = err.rawMessage;
      await this.d.store.putOutbox(item);
      this.d.emit({ type: "sealed-fallback", messageId: toHex(item.messageId), label: item.label, accountId: peer, reason: err.rawMessage });
      return "again";
    }
    if (res.outcome.case === "mismatchedDevices") {
      await this.refreshMismatched(res.outcome.value.accounts);
      item.request = undefined;
      await this.d.store.putOutbox(item);
      return "again";
    }
    if (res.outcome.case !== "stored") throw new ConnectError("SendSealed answered no outcome", Code.Internal);
    item.sealedStored = { serverTimestampMs: Number(res.outcome.value.serverTimestampMs), devices: res.outcome.value.entries.length };
    const rest = withoutAccount(req, peer);
    item.request = rest && toBinary(SendRequestSchema, rest);
    await this.d.store.putOutbox(item);
    if (rest) return "rest";
    await this.finish(item, item.sealedStored.serverTimestampMs, item.sealedStored.devices);
    return "done";
  }

  /** The server stored the item: the Messenger updates its message, the item leaves, "sent". */
  private async finish(item: OutboxItem, serverTimestampMs: number, devices: number): Promise<void> {
    await this.d.onStored(item, serverTimestampMs);
    await this.d.store.removeOutbox(item.seq);
    this.notifyIdle(); // waiters on one item (settled) look again
    const conversation = item.groupId ? { conversation: groupConversation(item.groupId) } : {};
    this.d.emit({
      type: "sent",
      messageId: toHex(item.messageId),
      label: item.label,
      ...conversation,
      serverTimestampMs,
      devices,
      sealed: !!item.sealedStored,
    });
  }

  /**
   * Encrypts pairwise content and sends it at once, outside the queue (refreshing device lists
   * on MismatchedDevices), for a caller that is itself a queued send: the group sender's key
   * distributions. Throws as a Send would; the caller's item is retried as a whole.
   */
  async sendNow(input: { messageId: Uint8Array; content: Uint8Array; to: string[] }): Promise<void> {
    const item: OutboxItem = { seq: -1, messageId: input.messageId, content: input.content, to: input.to, label: "now", createdAtMs: 0 };
    for (let round = 0; round < MAX_MISMATCH_ROUNDS; round++) {
      const req = await this.encrypt(item);
      if (!req) return;
      const res = await this.d.api.channel.send(req);
      if (res.outcome.case === "stored") return;
      if (res.outcome.case !== "mismatchedDevices") throw new ConnectError("Send answered no outcome", Code.Internal);
      await this.refreshMismatched(res.outcome.value.accounts);
    }
    throw new ConnectError("device lists kept changing while sending; retrying later", Code.Aborted);
  }

  private async refreshMismatched(accounts: { accountId: string; currentVersion: bigint }[]): Promise<void> {
    for (const a of accounts) await this.d.directory.devices(a.accountId, { refresh: true, minVersion: a.currentVersion });
  }

  /**
   * One Send of a sender-key body to `devices` (an empty entry each; message_id = the
   * content's), naming the device-list version this device knows of each account.
   */
  async sendSharedBody(messageId: Uint8Array, sharedBody: Uint8Array, devices: DeviceRef[]): Promise<SendResponse> {
    const versions: { accountId: string; deviceListVersion: bigint }[] = [];
    for (const accountId of new Set(devices.map((d) => d.accountId))) {
      const known = await this.d.directory.known(accountId);
      if (known) versions.push({ accountId, deviceListVersion: known.version });
    }
    return this.d.api.channel.send({ messageId, sharedBody, entries: devices.map((d) => ({ device: d, entry: new Uint8Array(0) })), versions });
  }

  /**
   * Claims bundles; when the server refuses the batch because a device has no prekeys yet
   * (FAILED_PRECONDITION), claims device by device and leaves out those without prekeys.
   */
  private async claim(accountId: string, deviceIds: number[]): Promise<Map<number, KeyBundle>> {
    try {
      return await this.d.directory.claim(accountId, deviceIds);
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.FailedPrecondition)) throw err;
    }
    const out = new Map<number, KeyBundle>();
    for (const id of deviceIds) {
      try {
        for (const [k, b] of await this.d.directory.claim(accountId, [id])) out.set(k, b);
      } catch (err) {
        if (!(err instanceof ConnectError && err.code === Code.FailedPrecondition)) throw err;
      }
    }
    return out;
  }

  /** Encrypts the item for every current device of its accounts and this account's other devices. */
  private async encrypt(item: OutboxItem, opts: { ownOnly?: boolean } = {}): Promise<SendRequest | undefined> {
    const me = this.d.self();
    const accounts = opts.ownOnly ? [me.accountId] : [...new Set([...item.to, me.accountId])];
    const recipients: Recipient[] = [];
    const versions: { accountId: string; deviceListVersion: bigint }[] = [];
    for (const accountId of accounts) {
      const list = await this.d.directory.devices(accountId);
      versions.push({ accountId, deviceListVersion: list.version });
      const need: number[] = [];
      const mine: Recipient[] = [];
      for (const dev of list.devices) {
        if (accountId === me.accountId && dev.deviceId === me.deviceId) continue;
        const r: Recipient = { address: { accountId, deviceId: dev.deviceId } };
        if (!(await this.d.cipher.hasSession(r.address))) need.push(dev.deviceId);
        mine.push(r);
      }
      if (need.length) {
        const bundles = await this.claim(accountId, need);
        for (const r of mine) {
          const b = bundles.get(r.address.deviceId);
          if (b) r.bundle = b;
        }
      }
      // A device with neither a session nor a bundle has no prekeys yet: unreachable, left out.
      recipients.push(...mine.filter((r) => r.bundle || !need.includes(r.address.deviceId)));
    }
    if (recipients.length === 0) return undefined;
    const content = fromBinary(ContentSchema, item.content);
    // Contacts learn this device's access key from its content, so they can send it sealed mail.
    const accessKey = item.to.some((a) => a !== me.accountId) ? this.d.ownAccessKey?.() : undefined;
    if (accessKey) content.senderAccessKey = accessKey;
    // Gossip of the log head, on what a person wrote (receipts and typing stay in their small buckets).
    if (item.to.some((a) => a !== me.accountId) && (content.body.case === "text" || content.body.case === "attachment")) {
      content.logHead = await this.d.ownLogHead?.();
    }
    const enc = await this.d.cipher.encryptForDevices(content, recipients, { messageId: item.messageId });
    return create(SendRequestSchema, {
      messageId: enc.messageId,
      sharedBody: enc.sharedBody,
      entries: enc.entries.map((e) => create(SendEntrySchema, { device: create(DeviceAddressSchema, e.address), entry: e.entry })),
      versions: versions.map((v) => create(AccountVersionSchema, v)),
    });
  }
}

/** The ordering lane of an item: its group, or its recipient accounts (per-conversation order). */
function laneOf(item: OutboxItem): string {
  return item.groupId ? groupConversation(item.groupId) : [...item.to].sort().join("\n");
}
