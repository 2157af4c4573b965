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
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AccountVersionSchema,
  SendEntrySchema,
  SendRequestSchema,
  type SendRequest,
  type Stored,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import type { KeyBundle } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { SealpostCryptoError } from "./crypto/errors.js";
import type { Recipient, SessionCipher } from "./protocol/session-cipher.js";
import { Backoff, sleep, type BackoffOptions } from "./backoff.js";
import type { ContactDirectory } from "./contact-directory.js";
import type { ConversationStore, DeviceRef, OutboxItem } from "./conversation-store.js";
import type { MessengerEvent } from "./events.js";
import { isEnvironmentFailure, isRetryableExhaustion } from "./failure-kinds.js";
import { MessengerError, messengerErrorOf } from "./messenger-errors.js";
import type { ServerApi } from "./server-api.js";

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
  onStored: (item: OutboxItem, stored: Stored) => Promise<void>;
  /** Called when an item failed for good (before it leaves the outbox). */
  onFailed: (item: OutboxItem, reason: string) => Promise<void>;
  /** A fatal error (this device was revoked): the outbox stops. */
  onFatal: (err: MessengerError) => void;
  backoff?: BackoffOptions;
}

/** True for failures worth retrying later: the server or the network, not the request. */
export function isTransient(err: unknown): boolean {
  if (messengerErrorOf(err)) return false;
  if (err instanceof SealpostCryptoError) return false;
  if (err instanceof ConnectError) {
    switch (err.code) {
      case Code.InvalidArgument:
      case Code.NotFound:
      case Code.PermissionDenied:
      case Code.AlreadyExists:
      case Code.OutOfRange:
      case Code.Unimplemented:
        return false;
      case Code.ResourceExhausted:
        return isRetryableExhaustion(err);
      default:
        return true;
    }
  }
  return true;
}

export class Outbox {
  private nextSeq?: number;
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
  async enqueue(input: { messageId: Uint8Array; content: Uint8Array; to: string[]; label: string; nowMs: number }): Promise<OutboxItem> {
    if (this.nextSeq === undefined) {
      const items = await this.d.store.listOutbox();
      this.nextSeq = (items.at(-1)?.seq ?? 0) + 1;
    }
    const item: OutboxItem = { seq: this.nextSeq++, messageId: input.messageId, content: input.content, to: input.to, label: input.label, createdAtMs: input.nowMs };
    await this.d.store.putOutbox(item);
    this.kick();
    return item;
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
          progressed = true;
        } catch (err) {
          const fatal = messengerErrorOf(err);
          if (fatal?.code === "device_revoked") {
            this.stopped = true;
            this.d.onFatal(fatal);
            return;
          }
          if (isTransient(err) && isEnvironmentFailure(err)) {
            environment = true;
            break;
          }
          const n = (this.attempts.get(item.seq) ?? 0) + 1;
          this.attempts.set(item.seq, n);
          if (isTransient(err) && n < MAX_ITEM_ATTEMPTS) {
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
          this.d.emit({ type: "send-failed", messageId: hex(item.messageId), label: item.label, reason });
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

  private async process(item: OutboxItem): Promise<void> {
    for (let round = 0; round < MAX_MISMATCH_ROUNDS; round++) {
      // A request saved by an earlier attempt may have been stored already: say it is a retry.
      const retry = !!item.request;
      if (!item.request) {
        const req = await this.encrypt(item);
        if (!req) {
          // Nobody to send to (own devices only, and this account has no other device).
          await this.d.store.removeOutbox(item.seq);
          return;
        }
        item.request = toBinary(SendRequestSchema, req);
        await this.d.store.putOutbox(item);
      }
      const res = await this.d.api.channel.send({ ...fromBinary(SendRequestSchema, item.request), retry });
      if (res.outcome.case === "stored") {
        await this.d.onStored(item, res.outcome.value);
        await this.d.store.removeOutbox(item.seq);
        this.d.emit({
          type: "sent",
          messageId: hex(item.messageId),
          label: item.label,
          serverTimestampMs: Number(res.outcome.value.serverTimestampMs),
          devices: res.outcome.value.entries.length,
        });
        return;
      }
      if (res.outcome.case === "mismatchedDevices") {
        for (const a of res.outcome.value.accounts) await this.d.directory.devices(a.accountId, { refresh: true, minVersion: a.currentVersion });
        item.request = undefined;
        await this.d.store.putOutbox(item);
        continue;
      }
      throw new ConnectError("Send answered no outcome", Code.Internal);
    }
    throw new ConnectError("device lists kept changing while sending; retrying later", Code.Aborted);
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
  private async encrypt(item: OutboxItem): Promise<SendRequest | undefined> {
    const me = this.d.self();
    const accounts = [...new Set([...item.to, me.accountId])];
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
    const enc = await this.d.cipher.encryptForDevices(content, recipients, { messageId: item.messageId });
    return create(SendRequestSchema, {
      messageId: enc.messageId,
      sharedBody: enc.sharedBody,
      entries: enc.entries.map((e) => create(SendEntrySchema, { device: create(DeviceAddressSchema, e.address), entry: e.entry })),
      versions: versions.map((v) => create(AccountVersionSchema, v)),
    });
  }
}

/** The ordering lane of an item: its recipient accounts (per-conversation order). */
function laneOf(item: OutboxItem): string {
  return [...item.to].sort().join("\n");
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
