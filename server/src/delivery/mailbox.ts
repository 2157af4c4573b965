/**
 * The mailbox layer: per-device mailboxes in K JetStream streams, bodies stored once, and the
 * core-NATS signal subject of each device. No standing consumers: reads are single-message
 * gets (next_by_subj from a cursor), so an idle device costs nothing and any instance can
 * read any mailbox; a long backlog is read in batches through a consumer that lives for one
 * batch (batch-reads.ts). On replicated streams the gets go to the stream leader (stream-reads.ts).
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Nats } from "../nats/connection.js";
import type { JetStreamPublisher } from "../nats/publisher.js";
import { StreamReads, type StreamMsg } from "../nats/stream-reads.js";
import { BatchReads, type Batch } from "../nats/batch-reads.js";
import { BODY_STREAM, bodySubject, mailboxPartition, mailboxStreamName, notifySubject } from "../nats/layout.js";
import { encodeSignal, type DeviceSignal } from "./device-signal.js";
import { addressKey, type DeviceRef } from "../device-address.js";

export type { DeviceRef } from "../device-address.js";

export interface MailboxLocation {
  stream: string;
  subject: string;
}

export interface Appended {
  seq: number;
  /** JetStream already had this Nats-Msg-Id: seq is the original message's. */
  duplicate: boolean;
}

/** Bodies are read by every recipient device of a fan-out; keep recently used ones close. */
class BodyCache {
  private readonly map = new Map<string, Uint8Array>();
  private bytes = 0;
  constructor(private readonly maxBytes: number) {}
  get(key: string): Uint8Array | undefined {
    const v = this.map.get(key);
    if (v) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: string, v: Uint8Array): void {
    if (v.length > this.maxBytes / 4 || this.map.has(key)) return;
    this.map.set(key, v);
    this.bytes += v.length;
    for (const [k, old] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(k);
      this.bytes -= old.length;
    }
  }
}

/** How long a stream's subject count (from a count's answer) is trusted: then the next count refreshes it. */
export const SUBJECT_COUNT_TTL_MS = 60_000;

/** Device locations remembered (oldest forgotten first): ~150 bytes each. */
const MAX_REMEMBERED_LOCATIONS = 100_000;

export class Mailboxes {
  private readonly bodies = new BodyCache(32 * 1024 * 1024);
  private readonly locations = new Map<string, MailboxLocation>();

  private readonly reads: StreamReads;
  private readonly batchReads: BatchReads | undefined;
  /** Distinct subjects per mailbox stream, as the last count's answer said, and when. */
  private readonly subjectCounts = new Map<string, { subjects: number; atMs: number }>();

  /**
   * @param reads a manager with a short timeout for reads: a read lost in a NATS reconnect
   *   should be retried in seconds, not after the 10 s default.
   * @param replicated the streams have several replicas (R3): read from their leaders.
   * @param coalesced direct gets as coalesced core requests (single-replica streams; the
   *   server passes its publisher, tests that inject `reads` leave it out).
   */
  constructor(
    private readonly nats: Nats,
    readonly partitions: number,
    reads: JetStreamManager = nats.jsm,
    replicated = false,
    coalesced?: JetStreamPublisher,
    private readonly now: () => number = Date.now,
  ) {
    this.reads = new StreamReads(reads, replicated, coalesced);
    // Batches use a short-lived consumer: cheap on a single-replica stream; on a replicated
    // one every consumer create is a cluster-wide proposal, so reads stay single leader gets.
    this.batchReads = coalesced && !replicated ? new BatchReads(nats.nc, coalesced) : undefined;
  }

  /** Whether batch() reads many messages per round trip here. */
  get batches(): boolean {
    return this.batchReads !== undefined;
  }

  /** Up to `max` messages of this mailbox after `after`, ascending and contiguous (batch-reads.ts). */
  async batch(loc: MailboxLocation, after: number, max: number): Promise<Batch> {
    // Callers ask only where `batches` says yes (mailbox-reader.ts reads single gets otherwise).
    if (!this.batchReads) throw new Error("batch reads need single-replica streams and the coalesced publisher");
    return this.batchReads.read(loc.stream, loc.subject, after, max);
  }

  /**
   * The device's stream and subject. The partition is a SHA-256 of the address, and the hot
   * path asks several times per message: recently used devices are remembered.
   */
  locate(d: DeviceRef): MailboxLocation {
    const key = addressKey(d);
    let loc = this.locations.get(key);
    if (!loc) {
      const p = mailboxPartition(d.accountId, d.deviceId, this.partitions);
      loc = { stream: mailboxStreamName(p), subject: `sp.mbox.${p}.${key}` };
      if (this.locations.size >= MAX_REMEMBERED_LOCATIONS) this.locations.delete(this.locations.keys().next().value!);
      this.locations.set(key, loc);
    }
    return loc;
  }

  /** Appends one record; `msgId` makes a retry inside the duplicate window return the original sequence. */
  async append(loc: MailboxLocation, record: Uint8Array, msgId: string, traceparent?: string): Promise<Appended> {
    const ack = await this.nats.publisher.publish(loc.subject, record, { msgId, expectStream: loc.stream, traceparent });
    return { seq: ack.seq, duplicate: ack.duplicate };
  }

  /** The first stored message of this mailbox with a sequence > after, or null. */
  next(loc: MailboxLocation, after: number): Promise<StreamMsg | null> {
    return this.reads.get(loc.stream, { next_by_subj: loc.subject, seq: after + 1 });
  }

  /** Exactly this sequence of the stream (any subject), or null when absent or deleted. */
  bySeq(stream: string, seq: number): Promise<StreamMsg | null> {
    return this.reads.get(stream, { seq });
  }

  /**
   * Deletes without erasing (overwrite is much slower; the data is ciphertext anyway). One
   * core publish with a reply subject (publisher.ts), so a batch of deletes is pipelined.
   */
  async delete(stream: string, seq: number): Promise<boolean> {
    try {
      const r = await this.nats.publisher.api<{ success?: boolean }>(`$JS.API.STREAM.MSG.DELETE.${stream}`, { seq, no_erase: true });
      return !!r.success;
    } catch (err) {
      // Deleted concurrently (a second Ack, expiry): already gone is what we wanted.
      if (/not found|no message/i.test(String((err as Error)?.message))) return false;
      throw err;
    }
  }

  /**
   * How many messages one device's mailbox holds, and the stream's last sequence from the
   * same answer (one stream info with a subject filter). nats-server takes the stream's
   * state before it counts the subject, so every message at or below `lastSeq` is in
   * `count` if it is the device's (server/test/stream-info-order.test.ts holds the
   * nats-server in use to that). The filter names the account's devices, not the device:
   * nats-server 2.9.10 often answers a literal filter with no subjects at all after
   * subject-filtered purges with publishes in flight (server/test/mailbox-count.test.ts).
   */
  async countStored(d: DeviceRef): Promise<{ count: number; lastSeq: number }> {
    const loc = this.locate(d);
    const info = await this.nats.publisher.api<{ state?: { last_seq?: number; num_subjects?: number; subjects?: Record<string, number> } }>(
      `$JS.API.STREAM.INFO.${loc.stream}`,
      { subjects_filter: `${loc.subject.slice(0, loc.subject.lastIndexOf("."))}.*` },
    );
    if (info.state?.num_subjects !== undefined) this.subjectCounts.set(loc.stream, { subjects: info.state.num_subjects, atMs: this.now() });
    return { count: info.state?.subjects?.[loc.subject] ?? 0, lastSeq: info.state?.last_seq ?? 0 };
  }

  /**
   * How many distinct subjects (devices with mail) the mailbox stream held at its last count
   * on this instance, if that was less than SUBJECT_COUNT_TTL_MS ago; else undefined. A count
   * costs nats-server (2.9.10) a pass over every subject of the stream (ack.ts weighs it).
   */
  knownSubjects(stream: string): number | undefined {
    const c = this.subjectCounts.get(stream);
    return c && this.now() - c.atMs < SUBJECT_COUNT_TTL_MS ? c.subjects : undefined;
  }

  /**
   * Deletes every message of one device's mailbox below `beforeSeq` with one request (an
   * acknowledged prefix: the caller proved nothing unacknowledged is stored below it).
   */
  async purgeBelow(d: DeviceRef, beforeSeq: number): Promise<number> {
    const loc = this.locate(d);
    const r = await this.nats.publisher.api<{ purged?: number }>(`$JS.API.STREAM.PURGE.${loc.stream}`, { filter: loc.subject, seq: beforeSeq });
    return r.purged ?? 0;
  }

  /** Drops every message of one device's mailbox (revocation). */
  async purge(d: DeviceRef): Promise<number> {
    const loc = this.locate(d);
    const r = await this.nats.jsm.streams.purge(loc.stream, { filter: loc.subject });
    return r.purged;
  }

  async putBody(key: string, body: Uint8Array): Promise<void> {
    await this.nats.publisher.publish(bodySubject(key), body, { msgId: `b:${key}`, expectStream: BODY_STREAM });
    this.bodies.set(key, body);
  }

  /** The body, or null when it expired. */
  async getBody(key: string): Promise<Uint8Array | null> {
    const hit = this.bodies.get(key);
    if (hit) return hit;
    const m = await this.reads.get(BODY_STREAM, { last_by_subj: bodySubject(key) });
    if (!m) return null;
    this.bodies.set(key, m.data);
    return m.data;
  }

  /** Hints are best effort (connection closed or reconnecting): streams re-check on their own. */
  signal(d: DeviceRef, s: DeviceSignal): void {
    this.nats.publisher.publishCore(notifySubject(d.accountId, d.deviceId), encodeSignal(s));
  }

  /**
   * A hint that reaches the device's streams ahead of anything this instance asks nats-server
   * after it resolves (JetStreamPublisher.processed: never rejects, gives up after its bound).
   */
  async signalFirst(d: DeviceRef, s: DeviceSignal): Promise<void> {
    this.signal(d, s);
    await this.nats.publisher.processed();
  }
}
