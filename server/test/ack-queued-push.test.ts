/**
 * An Ack's purge never covers mail still queued for push, or delivered after the purge was
 * planned and not acked, or mail the stream never saw while another instance deletes mail the
 * stream counts as stored, on a real nats-server.
 *
 * Regression: a stream delivered mail another instance stored (fetched by sequence from its
 * hint) while this instance's own record of an earlier message waited in the push queue
 * behind it (the stream waits for its client between messages). An Ack of the delivered
 * mail planned a purge up to its highest sequence; the count check passed, since the queued
 * record is counted as known; and the purge deleted the queued message before it was
 * delivered, let alone acked. The same when the record arrived while the count was asked for.
 * And an Ack served by another instance deleted delivered mail before this stream heard of it:
 * the count (one message fewer) matched the stream's known mail plus one it never saw, which
 * the purge then deleted.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import type { DeviceSignal } from "../src/delivery/device-signal.js";
import type { DeviceRef } from "../src/device-address.js";
import { ReceiveHub } from "../src/delivery/receive-hub.js";
import { Acker } from "../src/delivery/ack.js";
import { defaultLimits } from "../src/delivery/limits.js";
import { nextEvent, openDrainedStreamOn, senderRecord, withMethod } from "./delivery-helpers.js";

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

const openDrainedStream = () => openDrainedStreamOn(server);

/**
 * openDrainedStream with this instance's own record of one message stored first and three
 * messages another instance stored after it, already delivered from their hints.
 */
async function streamWithOwnMailPending() {
  const { mailboxes, device, hub, stream, it, caller, store, stored } = await openDrainedStream();
  const ownRecord = senderRecord(0);
  const own = await store(ownRecord);
  const others = [await store(senderRecord(1)), await store(senderRecord(2)), await store(senderRecord(3))];
  for (const seq of others) mailboxes.signal(device, { kind: "mail", seq });
  const delivered: number[] = [];
  for (let i = 0; i < 3; i++) {
    const ev = await nextEvent(it);
    if (ev.event.case === "message") delivered.push(Number(ev.event.value.sequence));
  }
  expect(delivered).toEqual(others);
  const acker = new Acker(mailboxes, hub, defaultLimits);
  return {
    ack: (seqs: number[]) => acker.ack(caller, seqs.map(BigInt)),
    /** This instance's PubAck for its own message arrives: the record is queued for push. */
    ownArrives: () => stream.offer(own, ownRecord),
    stored,
    own,
    others,
    nextSequence: async () => {
      const ev = await nextEvent(it);
      return ev.event.case === "message" ? Number(ev.event.value.sequence) : undefined;
    },
  };
}

describe("Ack and the push queue", () => {
  it("a purge stops below mail queued for push: the queued message stays stored until it is delivered and acked", async () => {
    const s = await streamWithOwnMailPending();
    s.ownArrives();
    expect((await s.ack(s.others)).deleted).toBe(3);
    expect(await s.stored()).toEqual([s.own]);
    // It goes out next, and is gone only once acked.
    expect(await s.nextSequence()).toBe(s.own);
    expect((await s.ack([s.own])).deleted).toBe(1);
    expect(await s.stored()).toEqual([]);
  });

  it("mail queued for push while the ack's count is asked for is not purged either", async () => {
    const s = await streamWithOwnMailPending();
    // The purge is planned before the own record is queued; it arrives during the count.
    const realCount = Mailboxes.prototype.countStored;
    const counts = vi.spyOn(Mailboxes.prototype, "countStored").mockImplementation(async function (this: Mailboxes, d) {
      const n = await realCount.call(this, d);
      s.ownArrives();
      return n;
    });
    onTestFinished(() => counts.mockRestore());
    expect((await s.ack(s.others)).deleted).toBe(3);
    expect(counts).toHaveBeenCalledTimes(1);
    expect(await s.stored()).toEqual([s.own]);
    expect(await s.nextSequence()).toBe(s.own);
  });
});

describe("Ack on another instance", () => {
  it("deleting mail this stream has in flight does not let its purge take mail it never saw", async () => {
    const { ctx, mailboxes, device, hub, it, caller, store, stored } = await openDrainedStream();
    // Stored with no hint reaching this stream (another instance's, still in transit).
    const unseen = await store(senderRecord(0));
    const live = [await store(senderRecord(1)), await store(senderRecord(2)), await store(senderRecord(3)), await store(senderRecord(4))];
    for (const seq of live) mailboxes.signal(device, { kind: "mail", seq });
    for (const seq of live) {
      const ev = await nextEvent(it);
      expect(ev.event.case === "message" && Number(ev.event.value.sequence)).toBe(seq);
    }
    // The other instance: no stream of the device, and its "acked" hint is late (in transit
    // until the end of the test); what it says before deleting goes out as usual.
    const held: DeviceSignal[] = [];
    const theirs = new Mailboxes(ctx.nats, ctx.layout.partitions);
    const elsewhere = withMethod(theirs, "signal", (d: DeviceRef, sig: DeviceSignal) => (sig.kind === "acked" ? void held.push(sig) : theirs.signal(d, sig)));
    const theirHub = new ReceiveHub(ctx.nats, Date.now);
    onTestFinished(() => theirHub.close());
    const other = new Acker(elsewhere, theirHub, defaultLimits);
    const here = new Acker(mailboxes, hub, defaultLimits);
    // While this instance's Ack of the first three asks for its count, the client's Ack of the
    // fourth (sent over another connection) is served by the other instance.
    const realCount = Mailboxes.prototype.countStored;
    const counts = vi.spyOn(Mailboxes.prototype, "countStored").mockImplementation(async function (this: Mailboxes, d) {
      expect((await other.ack(caller, [BigInt(live[3])])).deleted).toBe(1);
      return realCount.call(this, d);
    });
    onTestFinished(() => counts.mockRestore());
    expect((await here.ack(caller, live.slice(0, 3).map(BigInt))).deleted).toBe(3);
    expect(counts).toHaveBeenCalledTimes(1);
    expect(held).toEqual([{ kind: "acked", sequences: [live[3]] }]);
    expect(await stored()).toEqual([unseen]);
  });

  it("deleting this instance's own record that the stream dropped (it could not queue it) does not let its purge take mail it never saw", async () => {
    const { ctx, mailboxes, hub, stream, it, caller, store, stored } = await openDrainedStream();
    // Three of this instance's own records pushed, and one stored between them whose hint has
    // not reached this stream.
    const own = [senderRecord(0), senderRecord(2), senderRecord(3)];
    const a = await store(own[0]);
    const unseen = await store(senderRecord(1));
    const live = [a, await store(own[1]), await store(own[2])];
    live.forEach((seq, i) => stream.offer(seq, own[i]));
    for (const seq of live) expect((await nextEvent(it)).event.case === "message" && seq).toBe(seq);
    // A fourth own record arrives while a read is due: not queued, remembered as stored.
    const late = senderRecord(4);
    const dropped = await store(late);
    stream.wake();
    stream.offer(dropped, late);
    // The device's stream on another instance delivered it and its client acked it there; the
    // "acked" hint that follows the delete is still in transit.
    const held: DeviceSignal[] = [];
    const theirs = new Mailboxes(ctx.nats, ctx.layout.partitions);
    const elsewhere = withMethod(theirs, "signal", (d: DeviceRef, sig: DeviceSignal) => (sig.kind === "acked" ? void held.push(sig) : theirs.signal(d, sig)));
    const theirHub = new ReceiveHub(ctx.nats, Date.now);
    onTestFinished(() => theirHub.close());
    expect((await new Acker(elsewhere, theirHub, defaultLimits).ack(caller, [BigInt(dropped)])).deleted).toBe(1);
    expect((await new Acker(mailboxes, hub, defaultLimits).ack(caller, live.map(BigInt))).deleted).toBe(3);
    expect(held).toEqual([{ kind: "acked", sequences: [dropped] }]);
    expect(await stored()).toEqual([unseen]);
  });
});
