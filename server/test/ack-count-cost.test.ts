/**
 * An Ack's count check is weighed against the mailbox stream's subjects, on a real
 * nats-server: nats-server 2.9.10 counts by passing over every subject of the stream, so in a
 * stream holding many devices' mail a small batch of live-pushed mail goes as deletes; the
 * first count tells the instance how many subjects there are, and a stream with few subjects
 * still has its batch counted and purged.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { Acker } from "../src/delivery/ack.js";
import { defaultLimits } from "../src/delivery/limits.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { countingAckOps, nextEvent, openDrainedStreamOn, senderRecord } from "./delivery-helpers.js";

let nats: TestNats;
let server: RunningServer;

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  server = await startTestServer(nats.url, { tokenSecret: "test-secret-test-secret-test-secret!" });
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
});

/**
 * A drained stream of a fresh device, `others` other devices' mail in its mailbox stream, and
 * an Acker whose count checks, purges and deletes are counted. One delete per
 * `subjectsPerDelete` subjects of the stream (the test's scale; the server's is 400).
 */
async function setup(others: number, subjectsPerDelete: number) {
  const s = await openDrainedStreamOn(server);
  const loc = s.mailboxes.locate(s.device);
  for (let n = 0; n < others; ) {
    const other = { accountId: `other${randomBytes(6).toString("hex")}`, deviceId: 1 };
    const at = s.mailboxes.locate(other);
    if (at.stream !== loc.stream) continue;
    await s.mailboxes.append(at, senderRecord(n++), randomBytes(11).toString("hex"));
  }
  const { mailboxes: counted, ops } = countingAckOps(s.mailboxes);
  const acker = new Acker(counted, s.hub, defaultLimits, undefined, undefined, subjectsPerDelete);
  /** Four of this instance's own records, pushed to the stream (live mail: the purge needs a count). */
  const pushFour = async () => {
    const seqs: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = senderRecord(i);
      const seq = await s.store(r);
      s.stream.offer(seq, r);
      seqs.push(seq);
    }
    for (const seq of seqs) expect((await nextEvent(s.it)).event.case === "message" && seq).toBe(seq);
    return seqs;
  };
  return { ...s, ops, pushFour, ack: (seqs: number[]) => acker.ack(s.caller, seqs.map(BigInt)) };
}

describe("the Ack's count check and the stream's subjects", () => {
  it("in a stream with many devices' mail, a small batch goes as deletes once the first count told how many subjects it holds", async () => {
    // ~40 subjects at one delete per 10: a count is worth it from 3 + 4 sequences on.
    const s = await setup(40, 10);
    const first = await s.pushFour();
    // Nothing known about the stream yet: counted (and purged: the stream knows all of it).
    expect((await s.ack(first)).deleted).toBe(4);
    expect(s.ops).toEqual({ counts: 1, purges: 1, deletes: 0 });
    expect(s.mailboxes.knownSubjects(s.mailboxes.locate(s.device).stream)).toBeGreaterThanOrEqual(41);
    const second = await s.pushFour();
    expect((await s.ack(second)).deleted).toBe(4);
    expect(s.ops).toEqual({ counts: 1, purges: 1, deletes: 4 });
    expect(await s.stored()).toEqual([]);
  });

  it("a batch large enough for the stream's subjects is still counted and purged", async () => {
    // At one delete per 1,000 subjects the stream's few hundred at most (this file's tests
    // share the nats-server) add nothing: 3 sequences are enough.
    const s = await setup(40, 1000);
    await s.ack(await s.pushFour());
    expect(s.ops).toEqual({ counts: 1, purges: 1, deletes: 0 });
    expect(s.mailboxes.knownSubjects(s.mailboxes.locate(s.device).stream)).toBeLessThan(1000);
    expect((await s.ack(await s.pushFour())).deleted).toBe(4);
    expect(s.ops).toEqual({ counts: 2, purges: 2, deletes: 0 });
    expect(await s.stored()).toEqual([]);
  });

  it("a stream's subject count is trusted for a minute, then counted again", async () => {
    let now = 1_000_000;
    const ctx = server.context;
    const mailboxes = new Mailboxes(ctx.nats, ctx.layout.partitions, ctx.nats.jsm, false, undefined, () => now);
    const device = { accountId: `acct${randomBytes(6).toString("hex")}`, deviceId: 1 };
    const loc = mailboxes.locate(device);
    expect(mailboxes.knownSubjects(loc.stream)).toBeUndefined();
    await mailboxes.append(loc, senderRecord(0), randomBytes(11).toString("hex"));
    await mailboxes.countStored(device);
    const known = mailboxes.knownSubjects(loc.stream);
    expect(known).toBeGreaterThanOrEqual(1);
    now += 59_000;
    expect(mailboxes.knownSubjects(loc.stream)).toBe(known);
    now += 1_000;
    expect(mailboxes.knownSubjects(loc.stream)).toBeUndefined();
  });
});
