/**
 * An Ack's purge never covers mail still queued for push, or delivered after the purge was
 * planned and not acked, on a real nats-server.
 *
 * Regression: a stream delivered mail another instance stored (fetched by sequence from its
 * hint) while this instance's own record of an earlier message waited in the push queue
 * behind it (the stream waits for its client between messages). An Ack of the delivered
 * mail planned a purge up to its highest sequence; the count check passed, since the queued
 * record is counted as known; and the purge deleted the queued message before it was
 * delivered, let alone acked. The same when the record arrived while the count was asked for.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { randomBytes } from "node:crypto";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import type { AuthenticatedDevice } from "../src/auth/authenticator.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { ReceiveStream, type ReceiveStreamDeps } from "../src/delivery/receive-stream.js";
import { ReceiveHub } from "../src/delivery/receive-hub.js";
import { Acker } from "../src/delivery/ack.js";
import { defaultLimits } from "../src/delivery/limits.js";
import { mailboxSequences, nextEvent, senderRecord } from "./delivery-helpers.js";

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
 * A stream at the head of a fresh device's mailbox, driven by hand (it waits between
 * messages like a stream whose client has not asked for more), with this instance's own
 * record of one message stored first and three messages another instance stored after it,
 * already delivered from their hints.
 */
async function streamWithOwnMailPending() {
  const ctx = server.context;
  const mailboxes = new Mailboxes(ctx.nats, ctx.layout.partitions);
  const deps: ReceiveStreamDeps = { nats: ctx.nats, mailboxes, receivers: ctx.layout.buckets.receivers, log: ctx.log, now: Date.now };
  const device = { accountId: `acct${randomBytes(6).toString("hex")}`, deviceId: 1 };
  const hub = new ReceiveHub(ctx.nats, Date.now);
  const stream = new ReceiveStream(deps, device, `stream-${randomBytes(4).toString("hex")}`, 0, 16);
  hub.add(stream);
  const abort = new AbortController();
  const it = stream.run(abort.signal);
  onTestFinished(async () => {
    abort.abort();
    await it.return(undefined);
    hub.close();
  });
  expect((await nextEvent(it)).event.case).toBe("drained"); // at the head of an empty mailbox

  const loc = mailboxes.locate(device);
  const store = async (r: Uint8Array) => (await mailboxes.append(loc, r, randomBytes(11).toString("hex"))).seq;
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
  const caller = { accountId: device.accountId, deviceId: device.deviceId } as AuthenticatedDevice;
  const acker = new Acker(mailboxes, hub, defaultLimits);
  return {
    ack: (seqs: number[]) => acker.ack(caller, seqs.map(BigInt)),
    /** This instance's PubAck for its own message arrives: the record is queued for push. */
    ownArrives: () => stream.offer(own, ownRecord),
    stored: () => mailboxSequences(ctx.nats, ctx.layout.partitions, device),
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
