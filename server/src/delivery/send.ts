/**
 * Send: validate, check the entries against the recipients' current device lists, store the
 * body once, append one record per device mailbox, and remember the outcome for idempotent
 * retries.
 *
 * Idempotency and crashes (see docs/ARCHITECTURE.md, Delivery):
 * - Each entry is published with Nats-Msg-Id = H(sender, message_id, recipient device), so a
 *   retry inside the stream's duplicate window (2 min) gets the original sequence back
 *   (PubAck.duplicate) instead of a second copy. A Send that crashed after storing some
 *   entries is completed by the retry without duplicating the stored ones.
 * - After every entry is stored, the Stored outcome goes into sp_sends under
 *   (sender device, message_id) as a KV create, without waiting for it (the hot path makes no
 *   KV round trip). Only a request marked `retry` looks the record up, so a retry after the
 *   window (up to the bucket's 24 h TTL) answers the original outcome with duplicate = true.
 *   A retry that finds no record yet (it raced the write) still dedupes inside the window.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createHash, hash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import type { JetStreamPublisher } from "../nats/publisher.js";
import {
  AccountMismatchSchema,
  MismatchedDevicesSchema,
  SendResponseSchema,
  StoredSchema,
  type AccountMismatch,
  type SendRequest,
  type SendResponse,
  type Stored,
  type StoredEntry,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { revoked, type AuthenticatedDevice } from "../auth/authenticator.js";
import type { Logger } from "../logger.js";
import type { CurrentDeviceList, DeviceLists } from "./device-lists.js";
import type { DeliveryLimits } from "./limits.js";
import { decodeRecord, encodeRecord, type MailboxRecord } from "./mailbox-record.js";
import type { DeviceRef, Mailboxes } from "./mailbox.js";
import type { RateLimiter } from "../rate-limit.js";
import type { Metrics } from "../observability/metrics.js";
import { storeOp, unavailable } from "../nats/store-errors.js";
import { bucketNames } from "../nats/layout.js";
import { checkAccountId, checkDeviceId, exhausted, hex, invalid } from "./validation.js";
import { encodeStored } from "./session-encoding.js";
import { listsAgree } from "./list-agreement.js";

/**
 * Bodies are inlined into each mailbox record while the duplicated bytes stay small (always
 * for one recipient device, where inline *is* stored once); larger fan-outs store the body
 * once in SP_BODIES and reference it. Inlining saves a publish and a read per message.
 */
export const INLINE_DUPLICATE_BYTES = 8 * 1024;

const SENDS_BUCKET = bucketNames.sends;
/** A KV create: refused when the key exists (a concurrent retry wrote it first). */
const KV_CREATE = { expectLastSubjectSeq: 0 } as const;

/**
 * Admission control: stores (publishes awaiting their PubAck) this instance lets be in flight
 * before it sheds new Sends. Past it, more Sends only queue on the NATS connection, delay
 * every delivery behind them, and time out; shedding keeps deliveries flowing and tells the
 * client when to come back.
 */
export const MAX_STORES_IN_FLIGHT = 4096;
/** Told to shed clients (header `sealpost-retry-after-ms`): about the time a full queue drains. */
export const OVERLOAD_RETRY_AFTER_MS = 200;
export const RETRY_AFTER_HEADER = "sealpost-retry-after-ms";

/** Sends with more entries than this take the general device-list check (listsAgree compares pairwise). */
const QUICK_CHECK_MAX_ENTRIES = 32;

export interface SenderDeps {
  mailboxes: Mailboxes;
  sends: KV;
  /** Writes the outcome records (sp_sends) without a round trip on the Send. */
  publisher: JetStreamPublisher;
  limits: DeliveryLimits;
  rate: RateLimiter;
  deviceLists: DeviceLists;
  now: () => number;
  log: Logger;
  /** Overrides MAX_STORES_IN_FLIGHT (tests). */
  maxStoresInFlight?: number;
  metrics?: Metrics;
  /** The current trace context as a traceparent, stored with each record (tracing on). */
  traceparent?: () => string | undefined;
  /**
   * Hands a stored record to this instance's own streams of the device (no NATS round trip);
   * true when one of them is the device's current stream (then no hint is published).
   */
  pushLocal?: (device: DeviceRef, seq: number, record: Uint8Array, traceparent?: string) => boolean;
}

interface Target {
  device: DeviceRef;
  entry: Uint8Array;
}

export class Sender {
  constructor(private readonly d: SenderDeps) {}

  /**
   * @param opts.checkSenderListed the caller checked the token only (Authenticator.token):
   *   check here that the sender is still in its account's current list, from the same read
   *   the entry check makes of that account anyway (one KV read and one round trip less per
   *   Send than Authenticator.require before it). A revoked sender gets revoked(), also on a
   *   retry whose outcome is stored.
   */
  async send(sender: AuthenticatedDevice, req: SendRequest, opts: { checkSenderListed?: boolean } = {}): Promise<SendResponse> {
    if (!this.d.rate.take(`${sender.accountId}/${sender.deviceId}`)) {
      this.d.metrics?.rejected("sends_per_minute");
      throw exhausted(`send rate limit exceeded: sends_per_minute is ${this.d.limits.sendsPerMinute} per device`);
    }
    return this.store({ device: sender }, req, opts);
  }

  /**
   * SendSealed, once the caller's access key was accepted for `accountId`: the same path with
   * no sender. Every entry must address that account; the records carry no sender; the
   * idempotency key is (account, message_id). `list` is the account's current list as the
   * access check read it (not read again).
   */
  sendSealed(accountId: string, req: SendRequest, list: CurrentDeviceList): Promise<SendResponse> {
    return this.store({ sealedTo: accountId }, req, { known: list });
  }

  private async store(origin: Origin, req: SendRequest, opts: { checkSenderListed?: boolean; known?: CurrentDeviceList }): Promise<SendResponse> {
    const sender = origin.device;
    const targets = this.validate(origin, req);
    // The common Send (no retry, every list in memory and agreeing) reads and awaits nothing
    // before its stores; anything else takes the general check, which reads what it lacks.
    const listOf = (account: string) => (opts.known && account === origin.sealedTo ? opts.known : this.d.deviceLists.cachedDeviceList?.(account));
    const quick = !req.retry && targets.length <= QUICK_CHECK_MAX_ENTRIES;
    const read = quick && listsAgree(sender ?? origin.sealedTo, targets, listOf, !!opts.checkSenderListed) ? undefined : this.listReader(listOf);
    const listed =
      read && sender && opts.checkSenderListed
        ? read(sender.accountId).then((l) => {
            if (!l?.deviceIds.includes(sender.deviceId)) throw revoked(sender);
          })
        : undefined;
    listed?.catch(() => {});
    if (req.ephemeral) {
      await listed;
      return this.sendEphemeral(origin, req, targets);
    }

    const maxStores = this.d.maxStoresInFlight ?? MAX_STORES_IN_FLIGHT;
    // An idle instance takes any Send, however many entries it has.
    if (this.d.publisher.inFlight > 0 && this.d.publisher.inFlight + targets.length > maxStores) {
      this.d.metrics?.rejected("admission");
      throw new ConnectError(
        `server busy: ${this.d.publisher.inFlight} stores in flight on this instance (admission limit ${maxStores}); nothing was stored, retry after ${OVERLOAD_RETRY_AFTER_MS} ms`,
        Code.ResourceExhausted,
        { [RETRY_AFTER_HEADER]: String(OVERLOAD_RETRY_AFTER_MS) },
      );
    }
    // Who the idempotency key and the Msg-Ids are about: the sending device, or for a sealed
    // Send "_sealed" and the account (no account id starts with "_").
    const id = hex(req.messageId);
    const key = sender ? `${sender.accountId}.${sender.deviceId}.${id}` : `_sealed.${origin.sealedTo}.${id}`;
    if (read) {
      // All reads at once: the idempotency record (retries only) wins over whatever the lists say now.
      const listCheck = this.checkDeviceLists(origin, targets, read);
      listCheck.catch(() => {});
      const earlier = req.retry ? await storeOp("the idempotency lookup", () => this.d.sends.get(key)) : null;
      await listed;
      if (earlier && earlier.operation === "PUT" && earlier.value.length > 0) return stored(earlier.value, true);

      const mismatch = await listCheck;
      if (mismatch) return mismatch;
    }

    this.d.metrics?.sendFanout(targets.length);
    const ts = this.d.now();
    const inline = req.sharedBody.length * (targets.length - 1) <= INLINE_DUPLICATE_BYTES;
    let bodyKey: string | undefined;
    if (!inline) {
      // Derived from the content too, so a (mis)retry with another body cannot replace the first.
      bodyKey = createHash("sha256").update(`${key}/`).update(req.sharedBody).digest("base64url");
      await storeOp("storing the body", () => this.d.mailboxes.putBody(bodyKey!, req.sharedBody));
    }
    const idPrefix = sender ? `${sender.accountId}/${sender.deviceId}/${id}/` : `_sealed/${origin.sealedTo}/${id}/`;
    const traceparent = this.d.traceparent?.();
    const from = recordSender(origin);
    let hinted = false;
    const storeEntry = async (t: Target) => {
      const record = encodeRecord({
        messageId: req.messageId,
        ...from,
        timestampMs: ts,
        ephemeral: false,
        entry: t.entry,
        body: inline ? req.sharedBody : undefined,
        bodyKey,
      });
      const loc = this.d.mailboxes.locate(t.device);
      const msgId = hash("sha256", `${idPrefix}${t.device.accountId}/${t.device.deviceId}`, "base64url").slice(0, 22);
      const r = await this.d.mailboxes.append(loc, record, msgId, traceparent);
      // Live push: this instance's streams of the device get the record in memory; streams
      // on other instances get the sequence and fetch exactly that message. The record is
      // not put on the wire twice (bytes to NATS are the server's largest cost). When the
      // device's current stream is here, no hint: a device has one current stream, and if
      // a newer one replaces it, this one hints the device as it ends with unacked mail
      // (ReceiveStream.close). A hint costs nats-server a message and this instance a
      // wake-up for its own echo. A duplicate (a retry inside the dedupe window) may have been
      // delivered and acked since: its record is not pushed again, the hint lets streams fetch
      // it by sequence, and a fetch finds nothing once it is acked.
      if (r.duplicate || !this.d.pushLocal?.(t.device, r.seq, record, traceparent)) {
        this.d.mailboxes.signal(t.device, { kind: "mail", seq: r.seq });
        hinted = true;
      }
      return r;
    };
    // Some entries may be stored when one fails: the client retries with the same
    // message_id, which completes the rest and gets the stored ones' original sequences back.
    const results = await Promise.allSettled(targets.map(storeEntry));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw unavailable("storing the entries", (failed as PromiseRejectedResult).reason);
    const acks = results.map((r) => (r as PromiseFulfilledResult<{ seq: number; duplicate: boolean }>).value);
    let appended = 0;
    for (const a of acks) if (!a.duplicate) appended++;
    this.d.metrics?.appended(appended);
    // A retry inside the duplicate window answers the original server time (read from the
    // first copy: one read, on retries only).
    const dup = acks.findIndex((a) => a.duplicate);
    const originalTs = dup < 0 ? ts : await this.originalTimestamp(targets[dup].device, acks[dup].seq, ts);
    const outcome = storedOutcome(originalTs, targets, (i) => acks[i].seq);
    // The record for late retries, unconfirmed (no PubAck): if it is lost, retries inside the
    // duplicate window still dedupe; a second writer (concurrent retry) fails the create
    // harmlessly. It is on the connection before the answer (flushed below).
    this.d.publisher.publishUnconfirmed(`$KV.${SENDS_BUCKET}.${key}`, encodeStored(outcome), KV_CREATE);
    // The hints reach nats-server before the answer: the sender's next message, through
    // any instance, is stored after them and cannot be pushed ahead of them (per-sender
    // order across instances; JetStreamPublisher.processed). Without hints (every
    // recipient's stream is here) handing the record to the connection is enough.
    await (hinted ? this.d.publisher.processed() : this.d.publisher.flushed());
    outcome.duplicate = appended === 0;
    return storedResponse(outcome);
  }

  private async originalTimestamp(device: DeviceRef, seq: number, fallback: number): Promise<number> {
    try {
      const m = await this.d.mailboxes.bySeq(this.d.mailboxes.locate(device).stream, seq);
      return m ? decodeRecord(m.data).timestampMs : fallback;
    } catch {
      return fallback;
    }
  }

  private validate(origin: Origin, req: SendRequest): Target[] {
    const sender = origin.device;
    const l = this.d.limits;
    if (req.messageId.length !== 16) throw invalid(`message_id must be exactly 16 bytes, got ${req.messageId.length}`);
    if (req.sharedBody.length > l.maxBodyBytes) {
      throw exhausted(`shared_body is ${req.sharedBody.length} bytes; max_body_bytes is ${l.maxBodyBytes} (send larger content as an attachment)`);
    }
    if (req.entries.length === 0) throw invalid("entries must not be empty (one entry per recipient device)");
    if (req.entries.length > l.maxEntriesPerSend) {
      throw exhausted(`${req.entries.length} entries; max_entries_per_send is ${l.maxEntriesPerSend}`);
    }
    const seen = new Set<string>();
    const targets: Target[] = new Array(req.entries.length);
    for (let i = 0; i < req.entries.length; i++) {
      const e = req.entries[i];
      if (!e.device) throw invalid(`entries[${i}].device is required`);
      checkAccountId(`entries[${i}].device.account_id`, e.device.accountId);
      checkDeviceId(`entries[${i}].device.device_id`, e.device.deviceId);
      if (e.entry.length > l.maxEntryBytes) {
        throw exhausted(`entries[${i}].entry is ${e.entry.length} bytes; max_entry_bytes is ${l.maxEntryBytes}`);
      }
      if (sender && e.device.accountId === sender.accountId && e.device.deviceId === sender.deviceId) {
        throw invalid(`entries[${i}] addresses the sending device ${sender.accountId}/${sender.deviceId} itself`);
      }
      if (origin.sealedTo !== undefined && e.device.accountId !== origin.sealedTo) {
        throw invalid(`entries[${i}] addresses account ${e.device.accountId}; a sealed Send goes to the devices of account_id ${origin.sealedTo} only`);
      }
      const k = `${e.device.accountId}/${e.device.deviceId}`;
      if (seen.has(k)) throw invalid(`entries[${i}] addresses device ${k} a second time (one entry per device)`);
      seen.add(k);
      targets[i] = { device: { accountId: e.device.accountId, deviceId: e.device.deviceId }, entry: e.entry };
    }
    const versions = new Set<string>();
    req.versions.forEach((v, i) => {
      checkAccountId(`versions[${i}].account_id`, v.accountId);
      if (versions.has(v.accountId)) throw invalid(`versions[${i}] repeats account ${v.accountId} (one version per account)`);
      if (origin.sealedTo !== undefined && v.accountId !== origin.sealedTo)
        throw invalid(`versions[${i}] names account ${v.accountId}; a sealed Send names only ${origin.sealedTo}`);
      versions.add(v.accountId);
    });
    return targets;
  }

  /** Typing and the like: straight to connected streams over core NATS, never stored. */
  private sendEphemeral(origin: Origin, req: SendRequest, targets: Target[]): SendResponse {
    const ts = this.d.now();
    for (const t of targets) {
      const record = encodeRecord({
        messageId: req.messageId,
        ...recordSender(origin),
        timestampMs: ts,
        entry: t.entry,
        body: req.sharedBody,
        ephemeral: true,
      });
      this.d.mailboxes.signal(t.device, { kind: "ephemeral", record });
    }
    return storedResponse(storedOutcome(ts, targets, () => 0));
  }

  /** Reads each account's current list at most once per Send (`inMemory` when it has it). */
  private listReader(inMemory: (account: string) => CurrentDeviceList | undefined): (account: string) => Promise<CurrentDeviceList | undefined> {
    const reads = new Map<string, Promise<CurrentDeviceList | undefined>>();
    return (account) => {
      let r = reads.get(account);
      if (!r) {
        const cached = inMemory(account);
        reads.set(account, (r = cached ? Promise.resolve(cached) : storeOp("the device-list lookup", () => this.d.deviceLists.currentDeviceList(account))));
        r.catch(() => {});
      }
      return r;
    };
  }

  /**
   * Compares the addressed devices with every involved account's current list (the sender's
   * own account always: its other devices must get a copy). missing = listed without entry
   * (except devices that have not uploaded prekeys yet: nobody can reach them);
   * stale = allocated once but no longer listed (revoked); extra = never allocated.
   */
  private async checkDeviceLists(
    origin: Origin,
    targets: Target[],
    read: (account: string) => Promise<CurrentDeviceList | undefined>,
  ): Promise<SendResponse | undefined> {
    // The sender's own account always (its other devices get a copy); a sealed Send's one account.
    const sender = origin.device ?? { accountId: origin.sealedTo!, deviceId: 0 };
    const byAccount = new Map<string, Set<number>>([[sender.accountId, new Set()]]);
    for (const t of targets) {
      let s = byAccount.get(t.device.accountId);
      if (!s) byAccount.set(t.device.accountId, (s = new Set()));
      s.add(t.device.deviceId);
    }
    const accounts = [...byAccount.keys()];
    const current = await Promise.all(accounts.map(read));
    const mismatches: AccountMismatch[] = [];
    // Devices without prekeys cannot be reached yet (no session can start): leaving them out
    // is not a mismatch. Looked up only for devices a Send left out (rare).
    const unreachable = new Map<string, Set<number>>();
    const lists = this.d.deviceLists;
    await Promise.all(
      accounts.map(async (account, i) => {
        const list = current[i];
        const addressed = byAccount.get(account)!;
        const left = list?.deviceIds.filter((id) => !addressed.has(id) && !(account === sender.accountId && id === sender.deviceId)) ?? [];
        if (left.length && lists.devicesWithoutPrekeys) {
          unreachable.set(account, new Set(await storeOp("the prekey lookup", () => lists.devicesWithoutPrekeys!(account, left))));
        }
      }),
    );
    accounts.forEach((account, i) => {
      const list = current[i];
      if (!list) throw new ConnectError(`account ${account} not found`, Code.NotFound);
      const addressed = byAccount.get(account)!;
      const listed = new Set(list.deviceIds);
      const missing = list.deviceIds.filter(
        (id) => !addressed.has(id) && !(account === sender.accountId && id === sender.deviceId) && !unreachable.get(account)?.has(id),
      );
      const stale: number[] = [];
      const extra: number[] = [];
      for (const id of addressed) {
        if (listed.has(id)) continue;
        (id < list.nextDeviceId ? stale : extra).push(id);
      }
      if (missing.length || stale.length || extra.length) {
        const asc = (a: number, b: number) => a - b;
        mismatches.push(
          create(AccountMismatchSchema, {
            accountId: account,
            missingDeviceIds: missing.sort(asc),
            staleDeviceIds: stale.sort(asc),
            extraDeviceIds: extra.sort(asc),
            currentVersion: list.version,
          }),
        );
      }
    });
    if (!mismatches.length) return undefined;
    return create(SendResponseSchema, { outcome: { case: "mismatchedDevices", value: create(MismatchedDevicesSchema, { accounts: mismatches }) } });
  }
}

/** Who a Send is from: an authenticated device, or (SendSealed) nobody the server knows, to one account. */
type Origin = { device: AuthenticatedDevice; sealedTo?: undefined } | { device?: undefined; sealedTo: string };

function recordSender(origin: Origin): Pick<MailboxRecord, "senderAccountId" | "senderDeviceId" | "sealed"> {
  return origin.device
    ? { senderAccountId: origin.device.accountId, senderDeviceId: origin.device.deviceId }
    : { senderAccountId: "", senderDeviceId: 0, sealed: true };
}

function stored(bytes: Uint8Array, duplicate: boolean): SendResponse {
  const s: Stored = fromBinary(StoredSchema, bytes);
  s.duplicate = duplicate;
  return storedResponse(s);
}

// Every routed message answers these. Written as the plain objects protobuf-es messages are
// ($typeName and every field): its create() fills them by reflection, ~1 KiB of garbage and a
// few microseconds per Send.

/** The Stored outcome: the server time and each entry's device and mailbox sequence (0: not stored). */
function storedOutcome(timestampMs: number, targets: Target[], sequence: (i: number) => number): Stored {
  const entries: StoredEntry[] = new Array(targets.length);
  for (let i = 0; i < targets.length; i++) {
    const { accountId, deviceId } = targets[i].device;
    entries[i] = {
      $typeName: "sealpost.delivery.v1.StoredEntry",
      device: { $typeName: "sealpost.directory.v1.DeviceAddress", accountId, deviceId },
      sequence: BigInt(sequence(i)),
    };
  }
  return { $typeName: "sealpost.delivery.v1.Stored", serverTimestampMs: BigInt(timestampMs), entries, duplicate: false };
}

function storedResponse(value: Stored): SendResponse {
  return { $typeName: "sealpost.delivery.v1.SendResponse", outcome: { case: "stored", value } };
}
