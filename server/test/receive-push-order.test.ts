/**
 * Live push keeps per-sender order when a pushed record cannot be had, on a real nats-server.
 *
 * Regression: a stream at the head of its mailbox got hints for two messages of one sender;
 * the get for the first failed (nats-server restarting), so it was left to a read, but the
 * second, already fetched, went out first. Seen in the fault suite as one message delivered
 * a place late after a nats-server restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { ReceiveStream, type ReceiveStreamDeps } from "../src/delivery/receive-stream.js";
import { nextEvent, senderRecord, withMethod } from "./delivery-helpers.js";

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

describe("live push order", () => {
  it("a pushed record whose get fails is not overtaken by the next one: both go out in sequence order", async () => {
    const ctx = server.context;
    const mailboxes = new Mailboxes(ctx.nats, ctx.layout.partitions);
    const failing = new Set<number>();
    // Gets of the sequences in `failing` fail once, as during a nats-server restart.
    const flaky = withMethod(mailboxes, "bySeq", (stream: string, seq: number) =>
      failing.delete(seq) ? Promise.reject(new Error("TIMEOUT")) : mailboxes.bySeq(stream, seq),
    );
    const deps: ReceiveStreamDeps = { nats: ctx.nats, mailboxes: flaky, receivers: ctx.layout.buckets.receivers, log: ctx.log, now: Date.now };
    const device = { accountId: `acct${randomBytes(6).toString("hex")}`, deviceId: 1 };
    const stream = new ReceiveStream(deps, device, "stream-order", 0, 8);
    const abort = new AbortController();
    const it = stream.run(abort.signal);
    try {
      expect((await nextEvent(it)).event.case).toBe("drained"); // at the head of an empty mailbox

      const loc = mailboxes.locate(device);
      const store = async (n: number) => (await mailboxes.append(loc, senderRecord(n), randomBytes(11).toString("hex"))).seq;
      const first = await store(1);
      const second = await store(2);
      failing.add(first);
      // Hints from another instance (sequence only): this stream fetches each message.
      mailboxes.signal(device, { kind: "mail", seq: first });
      mailboxes.signal(device, { kind: "mail", seq: second });

      const got: bigint[] = [];
      for (let i = 0; i < 2; i++) {
        const ev = await nextEvent(it);
        if (ev.event.case === "message") got.push(ev.event.value.sequence);
      }
      expect(got).toEqual([BigInt(first), BigInt(second)]);
    } finally {
      abort.abort();
      await it.return(undefined);
    }
  });
});
