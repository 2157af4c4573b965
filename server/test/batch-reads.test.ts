/**
 * Batch reads against a real nats-server: a batch is the subject's messages after the cursor,
 * ascending, complete and capped; `more` counts what is left; deleted messages are skipped;
 * the short-lived consumers are gone afterwards; and a mailbox read pass (MailboxReader)
 * returns exactly what single gets would, in order, across the switch from gets to batches.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, type TestNats } from "@sealpost/test-support";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { BatchReads } from "../src/nats/batch-reads.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { MailboxReader, SPREAD_GAP } from "../src/delivery/mailbox-reader.js";

let nats: TestNats;
let conn: Nats;
let reads: BatchReads;
const text = (b: Uint8Array) => new TextDecoder().decode(b);

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  conn = await connectNats(nats.url);
  await conn.jsm.streams.add({ name: "BATCH", subjects: ["batch.>"], allow_direct: true } as never);
  reads = new BatchReads(conn.nc, conn.publisher);
  // Two subjects interleaved, 30 messages each: a.0 b.0 a.1 b.1 ...
  for (let i = 0; i < 30; i++) {
    await conn.publisher.publish("batch.a", new TextEncoder().encode(`a${i}`));
    await conn.publisher.publish("batch.b", new TextEncoder().encode(`b${i}`));
  }
});
afterAll(async () => {
  reads?.close();
  await conn?.nc.close();
  await nats?.stop();
});

describe("BatchReads", () => {
  it("reads the subject's messages after the cursor, capped, and says how many are left", async () => {
    const first = await reads.read("BATCH", "batch.a", 0, 10);
    expect(first.msgs.map((m) => text(m.data))).toEqual(Array.from({ length: 10 }, (_, i) => `a${i}`));
    expect(first.msgs.map((m) => m.seq)).toEqual(Array.from({ length: 10 }, (_, i) => 2 * i + 1));
    expect(first.msgs.every((m) => m.subject === "batch.a")).toBe(true);
    expect(first.more).toBe(20);
    const rest = await reads.read("BATCH", "batch.a", first.msgs[9].seq, 100);
    expect(rest.msgs.map((m) => text(m.data))).toEqual(Array.from({ length: 20 }, (_, i) => `a${i + 10}`));
    expect(rest.more).toBe(0);
    expect(await reads.read("BATCH", "batch.a", rest.msgs[19].seq, 100)).toEqual({ msgs: [], more: 0 });
  });

  it("skips deleted messages and leaves no consumer behind", async () => {
    for (const seq of [2, 4, 6]) await conn.jsm.streams.deleteMessage("BATCH", seq, false);
    const b = await reads.read("BATCH", "batch.b", 0, 5);
    expect(b.msgs.map((m) => text(m.data))).toEqual(["b3", "b4", "b5", "b6", "b7"]);
    // Deletes are fire and forget: give the server a moment.
    await expect.poll(async () => (await conn.jsm.streams.info("BATCH")).state.consumer_count, { timeout: 5_000 }).toBe(0);
  });

  it("many batches at once each get their own messages", async () => {
    const out = await Promise.all(Array.from({ length: 40 }, (_, i) => reads.read("BATCH", i % 2 ? "batch.a" : "batch.b", 0, 30)));
    for (const [i, b] of out.entries())
      expect(b.msgs.map((m) => text(m.data))).toEqual(
        i % 2 ? Array.from({ length: 30 }, (_, k) => `a${k}`) : Array.from({ length: 27 }, (_, k) => `b${k + 3}`),
      );
  });
});

describe("MailboxReader", () => {
  it("returns what single gets return, in order, across the switch to batches, and drops messages acked meanwhile", async () => {
    const mailboxes = new Mailboxes(conn, 1, conn.jsm, false, conn.publisher);
    expect(mailboxes.batches).toBe(true);
    const loc = { stream: "BATCH", subject: "batch.a" };
    const reader = new MailboxReader(mailboxes, loc, 0);
    const got: string[] = [];
    for (let m = await reader.next(8); m; m = await reader.next(8)) {
      got.push(text(m.data));
      if (got.length === 14) reader.forget([(15 + 1) * 2 - 1]); // a15 acked elsewhere while buffered
      reader.prefetch();
    }
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => `a${i}`).filter((x) => x !== "a15"));
    // And from a cursor in the middle.
    const mid = new MailboxReader(mailboxes, loc, 41);
    const tail: string[] = [];
    for (let m = await mid.next(100); m; m = await mid.next(100)) tail.push(text(m.data));
    expect(tail).toEqual(Array.from({ length: 9 }, (_, i) => `a${i + 21}`));
  });

  it("reads mail spread among other devices' mail in a batch after its first two messages; mail side by side by single gets", async () => {
    // batch.s: 6 messages, each after more than SPREAD_GAP messages of other subjects.
    for (let i = 0; i < 6; i++) {
      await Promise.all(Array.from({ length: SPREAD_GAP + 10 }, (_, j) => conn.publisher.publish(`batch.f.${i}.${j}`, Uint8Array.of(0))));
      await conn.publisher.publish("batch.s", new TextEncoder().encode(`s${i}`));
    }
    const mailboxes = new Mailboxes(conn, 1, conn.jsm, false, conn.publisher);
    const calls: string[] = [];
    const next = mailboxes.next.bind(mailboxes);
    const batch = mailboxes.batch.bind(mailboxes);
    mailboxes.next = (...a) => (calls.push("get"), next(...a));
    mailboxes.batch = (...a) => (calls.push("batch"), batch(...a));
    const readAll = async (subject: string) => {
      calls.length = 0;
      const reader = new MailboxReader(mailboxes, { stream: "BATCH", subject }, 0);
      const got: string[] = [];
      for (let m = await reader.next(100); m; m = await reader.next(100)) got.push(text(m.data));
      return got;
    };
    expect(await readAll("batch.s")).toEqual(["s0", "s1", "s2", "s3", "s4", "s5"]);
    expect(calls).toEqual(["get", "get", "batch"]);
    // batch.t's messages lie side by side: single gets until the long-backlog switch (12).
    for (let i = 0; i < 14; i++) await conn.publisher.publish("batch.t", new TextEncoder().encode(`t${i}`));
    expect(await readAll("batch.t")).toEqual(Array.from({ length: 14 }, (_, i) => `t${i}`));
    expect(calls).toEqual([...Array.from({ length: 12 }, () => "get"), "batch"]);
  });
});
