/**
 * Delivery below the network: the record and signal codecs, the rate limiter, and the
 * service over an in-memory router transport against a real nats-server with fake device
 * lists, to reach paths the RPC tests cannot (lost hints, rate limits, tiny intervals).
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { startTestNats, type TestNats } from "@sealpost/test-support";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { ensureLayout } from "../src/nats/layout.js";
import { TokenSigner } from "../src/auth/tokens.js";
import { Authenticator } from "../src/auth/authenticator.js";
import type { Directory } from "../src/directory/service.js";
import { createDelivery, type Delivery } from "../src/delivery/service.js";
import { decodeRecord, encodeRecord } from "../src/delivery/mailbox-record.js";
import { decodeSignal, encodeSignal } from "../src/delivery/device-signal.js";
import { RateLimiter } from "../src/rate-limit.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import type { CurrentDeviceList } from "../src/delivery/device-lists.js";
import {
  bytes,
  entriesFor,
  Inbox,
  inProcessContext,
  mailboxSequences,
  newMessageId,
  routerClients,
  storedOf,
  text,
  WAIT,
  waitUntil,
  type DeliveryClient,
} from "./delivery-helpers.js";

describe("codecs", () => {
  it("round-trips a mailbox record with an inline body and with a body reference", () => {
    const base = {
      messageId: new Uint8Array(16).fill(9),
      senderAccountId: "alice",
      senderDeviceId: 2 ** 31 - 1,
      timestampMs: 1_795_000_000_123,
      entry: bytes("entry"),
      ephemeral: false,
    };
    const inline = decodeRecord(encodeRecord({ ...base, body: bytes("body") }));
    expect({ ...inline, body: text(inline.body!), entry: text(inline.entry) }).toMatchObject({
      ...base,
      entry: "entry",
      body: "body",
      messageId: base.messageId,
    });
    const ref = decodeRecord(encodeRecord({ ...base, ephemeral: true, bodyKey: "k-_1" }));
    expect(ref).toMatchObject({ bodyKey: "k-_1", ephemeral: true, senderDeviceId: 2 ** 31 - 1 });
    expect(ref.body).toBeUndefined();
    expect(() => decodeRecord(bytes("nonsense"))).toThrow(/not a mailbox record/);
  });

  it("writes a mailbox record byte for byte as stored records are (instances of other versions read them)", () => {
    // Pinned from the format's first encoder (TextEncoder and DataView): a rolling upgrade mixes instances.
    const base = {
      messageId: Uint8Array.from({ length: 16 }, (_, i) => i),
      senderAccountId: "alice_01",
      senderDeviceId: 70000,
      timestampMs: 1765000000123,
      entry: bytes("entry"),
      ephemeral: false,
    };
    const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
    expect(hex(encodeRecord({ ...base, body: bytes("body") }))).toBe(
      "0100000102030405060708090a0b0c0d0e0f0000019af232b27b08616c6963655f30310001117000000005656e747279626f6479",
    );
    expect(hex(encodeRecord({ ...base, ephemeral: true, bodyKey: "k-_1" }))).toBe(
      "0103000102030405060708090a0b0c0d0e0f0000019af232b27b08616c6963655f30310001117000000005656e7472796b2d5f31",
    );
    expect(hex(encodeRecord({ ...base, senderAccountId: "", senderDeviceId: 0, sealed: true, body: new Uint8Array(0) }))).toBe(
      "0104000102030405060708090a0b0c0d0e0f0000019af232b27b000000000000000005656e747279",
    );
    expect(() => encodeRecord({ ...base, senderAccountId: "al\u00efce", body: bytes("b") })).toThrow(/ASCII/);
  });

  it("round-trips a sealed record: no sender, and the flag that says so (records from before it read as not sealed)", () => {
    const sealed = {
      messageId: new Uint8Array(16).fill(7),
      senderAccountId: "",
      senderDeviceId: 0,
      timestampMs: 5,
      entry: bytes("sealed entry"),
      ephemeral: false,
    };
    const r = decodeRecord(encodeRecord({ ...sealed, sealed: true, body: bytes("b") }));
    expect(r).toMatchObject({ sealed: true, senderAccountId: "", senderDeviceId: 0, ephemeral: false });
    expect(text(r.entry)).toBe("sealed entry");
    expect(decodeRecord(encodeRecord({ ...sealed, senderAccountId: "alice", senderDeviceId: 1, body: bytes("b") })).sealed).toBe(false);
  });

  it("round-trips every device signal and ignores junk", () => {
    for (const s of [
      { kind: "mail" as const },
      { kind: "revoked" as const },
      { kind: "acked" as const, sequences: [1, 2 ** 40, 7] },
      { kind: "acking" as const, sequences: [3, 2 ** 40 + 1] },
      { kind: "takeover" as const, order: 12345, streamId: "abc_-" },
    ]) {
      expect(decodeSignal(encodeSignal(s))).toEqual(s);
    }
    expect(decodeSignal(encodeSignal({ kind: "ephemeral", record: bytes("r") }))).toMatchObject({ kind: "ephemeral" });
    expect(decodeSignal(encodeSignal({ kind: "mail", seq: 2 ** 40 + 3 }))).toEqual({ kind: "mail", seq: 2 ** 40 + 3 });
    expect(decodeSignal(encodeSignal({ kind: "mail", seq: 77 }))).toEqual({ kind: "mail", seq: 77 });
    expect(decodeSignal(new Uint8Array(0))).toBeUndefined();
    expect(decodeSignal(Uint8Array.of(99))).toBeUndefined();
  });

  it("rate-limits per key with a refilling token bucket and forgets full buckets", () => {
    let t = 0;
    const r = new RateLimiter(60, () => t);
    for (let i = 0; i < 60; i++) expect(r.take("d")).toBe(true);
    expect(r.take("d")).toBe(false);
    expect(r.take("other")).toBe(true);
    t += 1000; // one token per second
    expect(r.take("d")).toBe(true);
    expect(r.take("d")).toBe(false);
    t += 120_000;
    r.prune();
    expect(r.size).toBe(0);
  });
});

describe("service over an in-memory transport", () => {
  let nats: TestNats;
  let conn: Nats;
  let delivery: Delivery;
  let tokens: TokenSigner;
  let client: (accountId: string, deviceId: number) => DeliveryClient;
  let mailboxes: Mailboxes;
  let layoutBuckets: () => Awaited<ReturnType<typeof ensureLayout>>["buckets"];
  /** Another delivery service on the same NATS and layout, with other options (its Ack and Receive through a client of its own). */
  let otherDelivery: (
    options: Parameters<typeof createDelivery>[3],
  ) => Promise<{ client: (accountId: string, deviceId: number) => DeliveryClient; close(): Promise<void> }>;
  const lists = new Map<string, CurrentDeviceList>([
    ["ualice", { version: 1n, deviceIds: [1], nextDeviceId: 2 }],
    ["ubob", { version: 3n, deviceIds: [1, 2], nextDeviceId: 3 }],
  ]);

  beforeAll(async () => {
    nats = await startTestNats();
    conn = await connectNats(nats.url, "delivery-unit");
    const layout = await ensureLayout(conn.jsm, conn.kvm, 2, 1);
    layoutBuckets = () => layout.buckets;
    tokens = new TokenSigner(bytes("unit-secret-unit-secret-unit-secret!"));
    const ctx = inProcessContext(conn, layout, tokens, 2);
    const auth = new Authenticator(tokens, { isActive: async (a, d) => !!lists.get(a)?.deviceIds.includes(d) });
    const options = {
      deviceLists: { currentDeviceList: async (a: string) => lists.get(a) },
      checkIntervalMs: 150,
      limits: { sendsPerMinute: 20, attachmentsPerMinute: 3 },
    };
    delivery = await createDelivery(ctx, auth, {} as Directory, options);
    client = routerClients(delivery, tokens);
    otherDelivery = async (more) => {
      const d = await createDelivery(ctx, auth, {} as Directory, { ...options, ...more });
      return { client: routerClients(d, tokens), close: () => d.close() };
    };
    mailboxes = new Mailboxes(conn, 2);
  });
  afterAll(async () => {
    await delivery?.close();
    await conn?.nc.close();
    await nats?.stop();
  });

  const bob1 = { accountId: "ubob", deviceId: 1 };

  /** Mail stored straight into a device's mailbox with no hint (as after a lost or late one), from `sender`'s device 1. */
  const storeWithoutHint = (to: { accountId: string; deviceId: number }, sender: string, body: string, msgId: string) =>
    mailboxes.append(
      mailboxes.locate(to),
      encodeRecord({
        messageId: newMessageId(),
        senderAccountId: sender,
        senderDeviceId: 1,
        timestampMs: Date.now(),
        entry: bytes("e"),
        body: bytes(body),
        ephemeral: false,
      }),
      msgId,
    );

  it("finds mail whose notification was lost, by its periodic check", async () => {
    const inbox = new Inbox(client("ubob", 1));
    await inbox.waitDrained();
    // Store straight into the mailbox, with no hint at all.
    await storeWithoutHint(bob1, "ualice", "silent", "silent-1");
    await inbox.waitForMessages(1);
    expect(text(inbox.messages[0].sharedBody)).toBe("silent");
    await client("ubob", 1).ack({ sequences: [inbox.messages[0].sequence] });
    await inbox.close();
  });

  it("frees the window when an ack's hint was lost (the acked mail is gone from the stream)", async () => {
    const alice = client("ualice", 1);
    for (let i = 0; i < 3; i++)
      await alice.send({ messageId: newMessageId(), sharedBody: bytes(`w${i}`), entries: entriesFor([bob1, { accountId: "ubob", deviceId: 2 }]) });
    const inbox = new Inbox(client("ubob", 1), { maxInFlight: 1 });
    await inbox.waitForMessages(1);
    // Delete behind the stream's back: no acked hint reaches it.
    const loc = mailboxes.locate(bob1);
    await conn.jsm.streams.deleteMessage(loc.stream, Number(inbox.messages[0].sequence), false);
    await inbox.waitForMessages(2);
    await conn.jsm.streams.deleteMessage(loc.stream, Number(inbox.messages[1].sequence), false);
    await inbox.waitForMessages(3);
    expect(inbox.messages.map((m) => text(m.sharedBody))).toEqual(["w0", "w1", "w2"]);
    await inbox.close();
  });

  it("a retry after a crash mid-Send (some entries stored, no idempotency record) completes the rest without duplicates", async () => {
    lists.set("ucarol", { version: 1n, deviceIds: [1], nextDeviceId: 3 });
    const alice = client("ualice", 1);
    const messageId = newMessageId();
    const c1 = { accountId: "ucarol", deviceId: 1 };
    const c2 = { accountId: "ucarol", deviceId: 2 };
    // The first attempt stored carol's device 1 only (here: the list had only it), then "crashed"
    // before writing the idempotency record.
    const first = storedOf(await alice.send({ messageId, sharedBody: bytes("partial"), entries: entriesFor([c1]) }));
    await layoutBuckets().sends.delete(`ualice.1.${Buffer.from(messageId).toString("hex")}`);
    lists.set("ucarol", { version: 2n, deviceIds: [1, 2], nextDeviceId: 3 });
    const retry = storedOf(await alice.send({ messageId, sharedBody: bytes("partial"), entries: entriesFor([c1, c2]) }));
    expect(retry.entries[0].sequence).toBe(first.entries[0].sequence);
    expect(retry.duplicate).toBe(false);
    expect(await mailboxSequences(conn, 2, c1)).toEqual([Number(first.entries[0].sequence)]);
    expect(await mailboxSequences(conn, 2, c2)).toEqual([Number(retry.entries[1].sequence)]);
    // Once complete, a retry answers the record: duplicate, same sequences.
    const again = storedOf(await alice.send({ messageId, sharedBody: bytes("partial"), entries: entriesFor([c1, c2]) }));
    expect({ duplicate: again.duplicate, entries: again.entries }).toEqual({ duplicate: true, entries: retry.entries });
    // With every entry already stored and no record, the retry reports duplicate too.
    await layoutBuckets().sends.delete(`ualice.1.${Buffer.from(messageId).toString("hex")}`);
    const deduped = storedOf(await alice.send({ messageId, sharedBody: bytes("partial"), entries: entriesFor([c1, c2]) }));
    expect({ duplicate: deduped.duplicate, entries: deduped.entries }).toEqual({ duplicate: true, entries: retry.entries });
    expect(await mailboxSequences(conn, 2, c2)).toHaveLength(1);
  });

  it("answers a marked retry from the 24-hour outcome record (no KV read for first attempts), an unmarked one by the duplicate window only", async () => {
    lists.set("udan", { version: 1n, deviceIds: [1], nextDeviceId: 3 });
    const alice = client("ualice", 1);
    const d1 = { accountId: "udan", deviceId: 1 };
    const d2 = { accountId: "udan", deviceId: 2 };
    const marked = newMessageId();
    const first = storedOf(await alice.send({ messageId: marked, sharedBody: bytes("r"), entries: entriesFor([d1]) }));
    const key = `ualice.1.${Buffer.from(marked).toString("hex")}`;
    // The record is written without the Send waiting for it.
    await vi.waitFor(async () => expect((await layoutBuckets().sends.get(key))?.value.length).toBeGreaterThan(0), WAIT);
    // Entries that the duplicate window alone would store (d2 is new): a marked retry answers
    // the record instead and stores nothing.
    lists.set("udan", { version: 2n, deviceIds: [1, 2], nextDeviceId: 3 });
    const retried = storedOf(await alice.send({ messageId: marked, sharedBody: bytes("r"), entries: entriesFor([d1, d2]), retry: true }));
    expect({ duplicate: retried.duplicate, entries: retried.entries, ts: retried.serverTimestampMs }).toEqual({
      duplicate: true,
      entries: first.entries,
      ts: first.serverTimestampMs,
    });
    expect(await mailboxSequences(conn, 2, d2)).toEqual([]);
    // Unmarked, the same request is a new attempt: d1 dedupes in the window, d2 is stored.
    const unmarked = storedOf(await alice.send({ messageId: marked, sharedBody: bytes("r"), entries: entriesFor([d1, d2]) }));
    expect(unmarked.entries[0].sequence).toBe(first.entries[0].sequence);
    expect(await mailboxSequences(conn, 2, d2)).toEqual([Number(unmarked.entries[1].sequence)]);
  });

  it("pushes live mail to a stream at the head of its mailbox without reading the stream; a read later skips what was pushed", async () => {
    lists.set("ufay", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("upusher", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const fay = { accountId: "ufay", deviceId: 1 };
    const alice = client("upusher", 1);
    // Which sequences a read of the stream returned, and which messages arrived after a read
    // had returned them (delivered by reading, not by push).
    const faySubject = mailboxes.locate(fay).subject;
    const readSeqs = new Set<number>();
    const original = Mailboxes.prototype.next;
    // While the mail is sent, a read of fay's mailbox finds nothing (as if it came just
    // before the mail): whatever arrives then came by push, whatever the periodic check does.
    let readsFindNothing = false;
    const reads = vi.spyOn(Mailboxes.prototype, "next").mockImplementation(async function (this: Mailboxes, loc, after) {
      if (readsFindNothing && loc.subject === faySubject) return null;
      const m = await original.call(this, loc, after);
      if (m && loc.subject === faySubject) readSeqs.add(m.seq);
      return m;
    });
    onTestFinished(() => reads.mockRestore());
    const arrived: { seq: number; body: string; byRead: boolean }[] = [];
    let drained = false;
    const abort = new AbortController();
    const loop = (async () => {
      try {
        for await (const ev of client("ufay", 1).receive({}, { signal: abort.signal })) {
          if (ev.event.case === "drained") drained = true;
          if (ev.event.case === "message") {
            const seq = Number(ev.event.value.sequence);
            arrived.push({ seq, body: text(ev.event.value.sharedBody), byRead: readSeqs.has(seq) });
          }
        }
      } catch {
        // Closed by the test.
      }
    })();
    await vi.waitFor(() => expect(drained).toBe(true), WAIT);
    readsFindNothing = true;
    for (let i = 0; i < 20; i++) await alice.send({ messageId: newMessageId(), sharedBody: bytes(`live${i}`), entries: entriesFor([fay]) });
    // Pushed, not read: every message arrives although no read of the stream returns one.
    await vi.waitFor(() => expect(arrived).toHaveLength(20), WAIT);
    expect(arrived.filter((a) => a.byRead)).toEqual([]);
    readsFindNothing = false;
    // A hint without a record (as after a lost hint) makes the stream read: it skips the pushed mail.
    const before = reads.mock.calls.length;
    mailboxes.signal(fay, { kind: "mail" });
    await vi.waitFor(() => expect(reads.mock.calls.length).toBeGreaterThan(before), WAIT);
    await new Promise((r) => setTimeout(r, 100));
    expect(arrived.map((a) => a.body)).toEqual(Array.from({ length: 20 }, (_, i) => `live${i}`));
    reads.mockRestore();
    await client("ufay", 1).ack({ sequences: arrived.map((a) => BigInt(a.seq)) });
    expect(await mailboxSequences(conn, 2, fay)).toEqual([]);
    abort.abort();
    await loop;
  });

  it("acks as a cursor: an acknowledged prefix goes in one purge, out-of-order acks delete only what they name, later mail survives", async () => {
    lists.set("uerin", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("uacker", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const erin = { accountId: "uerin", deviceId: 1 };
    const alice = client("uacker", 1);
    const sendOne = async (i: number) =>
      storedOf(await alice.send({ messageId: newMessageId(), sharedBody: bytes(`c${i}`), entries: entriesFor([erin]) })).entries[0].sequence;
    const seqs: bigint[] = [];
    for (let i = 0; i < 5; i++) seqs.push(await sendOne(i));
    const purges = vi.spyOn(Mailboxes.prototype, "purgeBelow");
    const inbox = new Inbox(client("uerin", 1));
    await inbox.waitForMessages(5);
    await inbox.waitDrained();
    // Out of order, with the first still unacked: exactly the named ones go, no purge.
    expect((await client("uerin", 1).ack({ sequences: [seqs[3], seqs[1]] })).deleted).toBe(2);
    expect(purges).not.toHaveBeenCalled();
    expect(await mailboxSequences(conn, 2, erin)).toEqual([seqs[0], seqs[2], seqs[4]].map(Number));
    // Live mail arrives (pushed) before the rest is acked; the ack completes the prefix: one purge, the new mail stays.
    const later = await sendOne(5);
    await inbox.waitForMessages(6);
    expect((await client("uerin", 1).ack({ sequences: [seqs[0], seqs[2], seqs[4]] })).deleted).toBe(3);
    expect(purges).toHaveBeenCalledTimes(1);
    expect(await mailboxSequences(conn, 2, erin)).toEqual([Number(later)]);
    await inbox.close();
    // A stream opened after a cursor never purges: mail at or below the cursor is skipped, not acked.
    purges.mockClear();
    const skipped = await sendOne(6);
    const fromCursor = new Inbox(client("uerin", 1), { afterSequence: skipped });
    await fromCursor.waitDrained();
    await client("uerin", 1).ack({ sequences: [later] });
    expect(purges).not.toHaveBeenCalled();
    expect(await mailboxSequences(conn, 2, erin)).toEqual([Number(skipped)]);
    await fromCursor.close();
    purges.mockRestore();
  });

  it("an ack that leaves a delivered sequence below its highest one unacked: the prefix below it goes in one purge, the rest one delete each", async () => {
    lists.set("uhana", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("uhsender", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const hana = { accountId: "uhana", deviceId: 1 };
    const sender = client("uhsender", 1);
    const sendOne = async (i: number) =>
      storedOf(await sender.send({ messageId: newMessageId(), sharedBody: bytes(`h${i}`), entries: entriesFor([hana]) })).entries[0].sequence;
    const seqs: bigint[] = [];
    for (let i = 0; i < 6; i++) seqs.push(await sendOne(i));
    const purges = vi.spyOn(Mailboxes.prototype, "purgeBelow");
    const deletes = vi.spyOn(Mailboxes.prototype, "delete");
    onTestFinished(() => {
      purges.mockRestore();
      deletes.mockRestore();
    });
    const inbox = new Inbox(client("uhana", 1));
    await inbox.waitForMessages(6);
    await inbox.waitDrained();
    // seqs[3] stays unacked: seqs[0..2] go in one purge below seqs[3], seqs[4] and seqs[5] one delete each.
    const acked = [seqs[5], seqs[0], seqs[4], seqs[2], seqs[1]];
    expect((await client("uhana", 1).ack({ sequences: acked })).deleted).toBe(5);
    expect(purges).toHaveBeenCalledTimes(1);
    expect(purges.mock.calls[0][1]).toBe(Number(seqs[2]) + 1);
    expect(deletes.mock.calls.map((c) => c[1]).sort((a, b) => a - b)).toEqual([Number(seqs[4]), Number(seqs[5])]);
    expect(await mailboxSequences(conn, 2, hana)).toEqual([Number(seqs[3])]);
    // Acking it later empties the mailbox.
    expect((await client("uhana", 1).ack({ sequences: [seqs[3]] })).deleted).toBe(1);
    expect(await mailboxSequences(conn, 2, hana)).toEqual([]);
    await inbox.close();
  });

  /**
   * Nine messages to a device, then three Acks of three: the first Ack's purge is held until
   * the two later Acks have reached the server. Returns how many purges and deletes it took.
   */
  const heldAcks = async (clientOf: (accountId: string, deviceId: number) => DeliveryClient, account: string) => {
    lists.set(account, { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set(`${account}s`, { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const device = { accountId: account, deviceId: 1 };
    const sender = clientOf(`${account}s`, 1);
    const seqs: bigint[] = [];
    for (let i = 0; i < 9; i++)
      seqs.push(storedOf(await sender.send({ messageId: newMessageId(), sharedBody: bytes(`i${i}`), entries: entriesFor([device]) })).entries[0].sequence);
    const inbox = new Inbox(clientOf(account, 1));
    await inbox.waitForMessages(9);
    await inbox.waitDrained();
    const realPurge = Mailboxes.prototype.purgeBelow;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const purges = vi.spyOn(Mailboxes.prototype, "purgeBelow").mockImplementation(async function (this: Mailboxes, d, before) {
      if (purges.mock.calls.length === 1) await held;
      return realPurge.call(this, d, before);
    });
    const deletes = vi.spyOn(Mailboxes.prototype, "delete");
    try {
      const acker = clientOf(account, 1);
      const first = acker.ack({ sequences: seqs.slice(0, 3) });
      await vi.waitFor(() => expect(purges).toHaveBeenCalledTimes(1), WAIT);
      const later = [acker.ack({ sequences: seqs.slice(3, 6) }), acker.ack({ sequences: seqs.slice(6, 9) })];
      await new Promise((r) => setTimeout(r, 200)); // both arrive and wait
      release();
      const answers = await Promise.all([first, ...later]);
      expect(answers.map((a) => a.deleted)).toEqual([3, 3, 3]);
      expect(await mailboxSequences(conn, 2, device)).toEqual([]);
      return { purges: purges.mock.calls.length, deletes: deletes.mock.calls.length };
    } finally {
      purges.mockRestore();
      deletes.mockRestore();
      await inbox.close();
    }
  };

  it("acks of one device that arrive while one runs wait for it and go together: one more purge, no delete each", async () => {
    expect(await heldAcks(client, "uivy")).toEqual({ purges: 2, deletes: 0 });
  });

  it("a waiting batch of acks holds at most max_ack_sequences, as one Ack could", async () => {
    const capped = await otherDelivery({ limits: { maxAckSequences: 4 } });
    onTestFinished(() => capped.close());
    expect(await heldAcks(capped.client, "uiris")).toEqual({ purges: 3, deletes: 0 });
  });

  it("deletes each message instead of purging when the acked sequences lie far apart (a purge's cost grows with the stretch of stream it passes)", async () => {
    lists.set("uspread", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("uspreader", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("ufiller", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("ubystander", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const device = { accountId: "uspread", deviceId: 1 };
    // Hashed onto the same mailbox stream as uspread (of 2), so its mail lies between.
    const other = { accountId: "ubystander", deviceId: 1 };
    expect(mailboxes.locate(other).stream).toBe(mailboxes.locate(device).stream);
    // Spans wider than 5 sequences go as deletes.
    const narrow = await otherDelivery({ purgeMaxSpan: 5 });
    onTestFinished(() => narrow.close());
    const sendTo = async (from: string, to: typeof device, tag: string) =>
      storedOf(await narrow.client(from, 1).send({ messageId: newMessageId(), sharedBody: bytes(tag), entries: entriesFor([to]) })).entries[0].sequence;
    const purges = vi.spyOn(Mailboxes.prototype, "purgeBelow");
    onTestFinished(() => purges.mockRestore());
    // Three messages side by side (span 2), then three with six of other mail before each
    // (spans of 7 and more).
    const close: bigint[] = [];
    for (let i = 0; i < 3; i++) close.push(await sendTo("uspreader", device, `close${i}`));
    const spread: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      for (let k = 0; k < 6; k++) await sendTo("ufiller", other, `between${i}.${k}`);
      spread.push(await sendTo("uspreader", device, `spread${i}`));
    }
    const inbox = new Inbox(narrow.client("uspread", 1));
    await inbox.waitForMessages(6);
    await inbox.waitDrained();
    expect((await narrow.client("uspread", 1).ack({ sequences: close })).deleted).toBe(3);
    expect(purges).toHaveBeenCalledTimes(1);
    expect(await mailboxSequences(conn, 2, device)).toEqual(spread.map(Number));
    // The spread ones: one delete each, no purge, all gone; the other device's mail stays.
    expect((await narrow.client("uspread", 1).ack({ sequences: spread })).deleted).toBe(3);
    expect(purges).toHaveBeenCalledTimes(1);
    expect(await mailboxSequences(conn, 2, device)).toEqual([]);
    expect((await mailboxSequences(conn, 2, other)).length).toBeGreaterThanOrEqual(18);
    await inbox.close();
  });

  it("purges a batch of live-pushed mail after checking the mailbox holds exactly what was delivered; never past mail it has not delivered", async () => {
    lists.set("ugwen", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("ugsender", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const gwen = { accountId: "ugwen", deviceId: 1 };
    const sender = client("ugsender", 1);
    const sendOne = async (tag: string) =>
      storedOf(await sender.send({ messageId: newMessageId(), sharedBody: bytes(tag), entries: entriesFor([gwen]) })).entries[0].sequence;
    const inbox = new Inbox(client("ugwen", 1));
    await inbox.waitDrained();
    const purges = vi.spyOn(Mailboxes.prototype, "purgeBelow");
    for (let i = 0; i < 4; i++) await sendOne(`p${i}`);
    await inbox.waitForMessages(4);
    expect((await client("ugwen", 1).ack({ sequences: inbox.messages.map((m) => m.sequence) })).deleted).toBe(4);
    expect(purges).toHaveBeenCalledTimes(1);
    expect(await mailboxSequences(conn, 2, gwen)).toEqual([]);
    // Mail stored without any hint (as after a lost one): the stream has not delivered it.
    const hidden = await storeWithoutHint(gwen, "ugsender", "hidden", "hidden-1");
    const live = [await sendOne("q0"), await sendOne("q1"), await sendOne("q2")];
    await vi.waitFor(() => expect(inbox.messages.map((m) => m.sequence)).toEqual(expect.arrayContaining(live)), WAIT);
    purges.mockClear();
    // The count (4 stored) differs from what the stream has in flight (3): one delete each, the hidden mail stays.
    expect((await client("ugwen", 1).ack({ sequences: live })).deleted).toBe(3);
    expect(purges).not.toHaveBeenCalled();
    expect(await mailboxSequences(conn, 2, gwen)).toContain(hidden.seq);
    // ... and arrives with the stream's next check.
    await vi.waitFor(() => expect(inbox.messages.map((m) => text(m.sharedBody))).toContain("hidden"), WAIT);
    purges.mockRestore();
    await inbox.close();
  });

  it("mail that becomes known while the ack's count is asked for does not hide mail the stream never saw", async () => {
    lists.set("ujo", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("ujsender", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const jo = { accountId: "ujo", deviceId: 1 };
    const sender = client("ujsender", 1);
    const sendOne = async (tag: string) =>
      storedOf(await sender.send({ messageId: newMessageId(), sharedBody: bytes(tag), entries: entriesFor([jo]) })).entries[0].sequence;
    const inbox = new Inbox(client("ujo", 1));
    await inbox.waitDrained();
    // Stored without a hint (as by another instance whose hint is late): below the acked ones.
    const hidden = await storeWithoutHint(jo, "ujsender", "hidden", "hidden-jo");
    const live = [await sendOne("j0"), await sendOne("j1"), await sendOne("j2")];
    await vi.waitFor(() => expect(inbox.messages.map((m) => m.sequence)).toEqual(expect.arrayContaining(live)), WAIT);
    // The count sees the hidden mail and the three; before it answers, one more arrives live.
    // Counting that one too would make the numbers match and purge the hidden mail.
    const realCount = Mailboxes.prototype.countStored;
    const counts = vi.spyOn(Mailboxes.prototype, "countStored").mockImplementation(async function (this: Mailboxes, d) {
      const n = await realCount.call(this, d);
      const extra = await sendOne("j3");
      await vi.waitFor(() => expect(inbox.messages.map((m) => m.sequence)).toContain(extra), WAIT);
      return n;
    });
    const purges = vi.spyOn(Mailboxes.prototype, "purgeBelow");
    onTestFinished(() => {
      counts.mockRestore();
      purges.mockRestore();
    });
    expect((await client("ujo", 1).ack({ sequences: live })).deleted).toBe(3);
    expect(counts).toHaveBeenCalledTimes(1);
    expect(purges).not.toHaveBeenCalled();
    expect(await mailboxSequences(conn, 2, jo)).toContain(hidden.seq);
    await inbox.close();
  });

  it("a Send stored again inside the dedupe window after its mail was delivered and acked: the open stream does not get it again", async () => {
    lists.set("ukim", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    lists.set("uksender", { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const kim = { accountId: "ukim", deviceId: 1 };
    const inbox = new Inbox(client("ukim", 1));
    await inbox.waitDrained();
    const request = { messageId: newMessageId(), sharedBody: bytes("once"), entries: entriesFor([kim]) };
    const first = storedOf(await client("uksender", 1).send(request));
    await inbox.waitForMessages(1);
    expect((await client("ukim", 1).ack({ sequences: [first.entries[0].sequence] })).deleted).toBe(1);
    // As after an instance died between storing and answering: the sender sends it again
    // (not marked as a retry, so it is stored again and JetStream answers the first sequence).
    const again = storedOf(await client("uksender", 1).send(request));
    expect(again.entries[0].sequence).toBe(first.entries[0].sequence);
    expect(again.duplicate).toBe(true);
    const marker = storedOf(await client("uksender", 1).send({ messageId: newMessageId(), sharedBody: bytes("after"), entries: entriesFor([kim]) }));
    await vi.waitFor(() => expect(inbox.messages.map((m) => m.sequence)).toContain(marker.entries[0].sequence), WAIT);
    await new Promise((r) => setTimeout(r, 200));
    expect(inbox.messages.map((m) => text(m.sharedBody))).toEqual(["once", "after"]);
    await inbox.close();
  });

  it("keeps mail, bodies, attachments 30 days and idempotency records 24 hours", async () => {
    const day = 24 * 60 * 60 * 1e9;
    for (const name of ["SP_MAILBOX_0", "SP_MAILBOX_1", "SP_BODIES", "SP_ATTACHMENTS"]) {
      expect((await conn.jsm.streams.info(name)).config.max_age).toBe(30 * day);
    }
    expect((await conn.jsm.streams.info("KV_sp_attachments")).config.max_age).toBe(30 * day);
    expect((await conn.jsm.streams.info("KV_sp_sends")).config.max_age).toBe(day);
  });

  it("answers RESOURCE_EXHAUSTED naming the limit once a device exceeds sends_per_minute", async () => {
    const alice = client("ualice", 1);
    let err: ConnectError | undefined;
    for (let i = 0; i < 30 && !err; i++) {
      await alice
        .send({ messageId: newMessageId(), sharedBody: bytes("r"), entries: entriesFor([bob1, { accountId: "ubob", deviceId: 2 }]) })
        .catch((e) => (err = ConnectError.from(e)));
    }
    expect({ code: err?.code, message: err?.rawMessage }).toEqual({
      code: Code.ResourceExhausted,
      message: "send rate limit exceeded: sends_per_minute is 20 per device",
    });
  });

  it("rate-limits CreateAttachment per device (attachmentsPerMinute) without reserving anything", async () => {
    const bob2 = client("ubob", 2);
    const create = () => bob2.createAttachment({ size: 10n, sha256: new Uint8Array(32) });
    const before = (await layoutBuckets().attachments.status()).values;
    for (let i = 0; i < 3; i++) await create();
    const err = await create().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.rawMessage).toMatch(/^attachment rate limit exceeded: 3 CreateAttachment per minute per device; retry in \d+ s$/);
    expect((await layoutBuckets().attachments.status()).values).toBe(before + 3);
    // Another device is not affected.
    await client("ubob", 1).createAttachment({ size: 10n, sha256: new Uint8Array(32) });
  });

  it("holds a thousand concurrent streams on one instance, each woken only by its own mail", async () => {
    const N = 1000;
    const devices = Array.from({ length: N }, (_, i) => ({ accountId: `many${i}`, deviceId: 1 }));
    for (const d of devices) lists.set(d.accountId, { version: 1n, deviceIds: [1], nextDeviceId: 2 });
    const inboxes = devices.map((d) => new Inbox(client(d.accountId, d.deviceId)));
    await Promise.all(inboxes.map((i) => i.waitDrained()));
    await waitUntil("every stream registered", () => delivery.openStreams >= N);
    // One Send with 999 entries (the sender's own device excluded) reaches every other stream;
    // its 1 KiB body is stored once and referenced.
    const body = "to all ".repeat(150);
    const bodiesBefore = (await conn.jsm.streams.info("SP_BODIES")).state.messages;
    const res = storedOf(await client("many0", 1).send({ messageId: newMessageId(), sharedBody: bytes(body), entries: entriesFor(devices.slice(1)) }));
    expect((await conn.jsm.streams.info("SP_BODIES")).state.messages).toBe(bodiesBefore + 1);
    expect(res.entries).toHaveLength(N - 1);
    await Promise.all(inboxes.slice(1).map((i) => i.waitForMessages(1)));
    expect(inboxes[0].messages).toHaveLength(0);
    expect(inboxes.slice(1).every((i) => i.messages.length === 1 && text(i.messages[0].sharedBody) === body)).toBe(true);
    await Promise.all(inboxes.map((i) => i.close()));
    await waitUntil("every stream gone", () => delivery.openStreams === 0);
  });

  it("keeps at most one stream per device on an instance and counts open streams", async () => {
    const s1 = new Inbox(client("ubob", 2));
    await s1.waitDrained();
    const s2 = new Inbox(client("ubob", 2));
    await waitUntil("replacement", () => s1.ended);
    expect(s1.replaced).toBe(true);
    await s2.waitDrained();
    await waitUntil("one open stream", () => delivery.openStreams === 1);
    await s2.close();
    await waitUntil("no open streams", () => delivery.openStreams === 0);
  });
});
