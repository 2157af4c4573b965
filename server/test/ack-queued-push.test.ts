/**
 * An Ack's purge never covers mail still queued for push, on a real nats-server.
 *
 * Regression: a stream delivered mail another instance stored (fetched by sequence from its
 * hint) while this instance's own record of an earlier message waited in the push queue
 * behind it (the stream waits for its client between messages). An Ack of the delivered
 * mail planned a purge up to its highest sequence; the count check passed, since the queued
 * record is counted as known; and the purge deleted the queued message before it was
 * delivered, let alone acked.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import type { ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { encodeRecord } from "../src/delivery/mailbox-record.js";
import { ReceiveStream, type ReceiveStreamDeps } from "../src/delivery/receive-stream.js";
import { ReceiveHub } from "../src/delivery/receive-hub.js";
import { Acker } from "../src/delivery/ack.js";
import { defaultLimits } from "../src/delivery/limits.js";
import { mailboxSequences } from "./delivery-helpers.js";

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function next(it: AsyncGenerator<ReceiveResponse>, ms = 5000): Promise<ReceiveResponse> {
  const r = await Promise.race([it.next(), sleep(ms).then(() => undefined)]);
  if (!r || r.done) throw new Error("no event from the stream");
  return r.value;
}

describe("Ack and the push queue", () => {
  it("a purge stops below mail queued for push: the queued message stays stored until it is delivered and acked", async () => {
    const ctx = server.context;
    const mailboxes = new Mailboxes(ctx.nats, ctx.layout.partitions);
    const deps: ReceiveStreamDeps = { nats: ctx.nats, mailboxes, receivers: ctx.layout.buckets.receivers, log: ctx.log, now: Date.now };
    const device = { accountId: `acct${randomBytes(6).toString("hex")}`, deviceId: 1 };
    const hub = new ReceiveHub(ctx.nats, Date.now);
    const stream = new ReceiveStream(deps, device, "stream-queued", 0, 16);
    hub.add(stream);
    const acker = new Acker(mailboxes, hub, defaultLimits);
    const abort = new AbortController();
    const it = stream.run(abort.signal);
    try {
      expect((await next(it)).event.case).toBe("drained"); // at the head of an empty mailbox

      const loc = mailboxes.locate(device);
      const record = (n: number) =>
        encodeRecord({
          messageId: randomBytes(16),
          senderAccountId: "sender",
          senderDeviceId: 1,
          timestampMs: 1_700_000_000_000 + n,
          entry: new Uint8Array([n]),
          ephemeral: false,
          body: new Uint8Array(0),
        });
      const store = async (r: Uint8Array) => (await mailboxes.append(loc, r, randomBytes(11).toString("hex"))).seq;
      // This instance's own Send (its PubAck comes back later than the hints below), then
      // three messages another instance stored after it.
      const ownRecord = record(0);
      const own = await store(ownRecord);
      const others = [await store(record(1)), await store(record(2)), await store(record(3))];
      for (const seq of others) mailboxes.signal(device, { kind: "mail", seq });
      const delivered: number[] = [];
      for (let i = 0; i < 3; i++) {
        const ev = await next(it);
        if (ev.event.case === "message") delivered.push(Number(ev.event.value.sequence));
      }
      expect(delivered).toEqual(others);
      // The own record arrives while the client has not asked for the next message.
      stream.offer(own, ownRecord);

      const res = await acker.ack({ accountId: device.accountId, deviceId: device.deviceId } as never, others.map(BigInt));
      expect(res.deleted).toBe(3);
      expect(await mailboxSequences(ctx.nats, ctx.layout.partitions, device)).toEqual([own]);

      // It goes out next, and is gone only once acked.
      const ev = await next(it);
      expect(ev.event.case === "message" && Number(ev.event.value.sequence)).toBe(own);
      expect((await acker.ack({ accountId: device.accountId, deviceId: device.deviceId } as never, [BigInt(own)])).deleted).toBe(1);
      expect(await mailboxSequences(ctx.nats, ctx.layout.partitions, device)).toEqual([]);
    } finally {
      abort.abort();
      await it.return(undefined);
      hub.close();
    }
  });
});
