/**
 * Takeover races on a real nats-server, made deterministic by holding one stream's claim (the
 * receivers-bucket write) until the test releases it.
 *
 * Regression: a stream whose client went away while its claim was still in flight (a device
 * that gave up on a slow Receive and opened another elsewhere) completed the claim after the
 * newer stream's and published a takeover with the higher order: the device's only live
 * stream answered Replaced and ended. Seen in the reliability suite as a final pass that
 * ended on Replaced and reported the rest of the mailbox as lost.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { ReceiveStream, type ReceiveStreamDeps } from "../src/delivery/receive-stream.js";
import type { ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { heldPuts } from "./delivery-helpers.js";

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

/** The next event of a stream, or "nothing" if none comes within ms. */
async function nextWithin(it: AsyncGenerator<ReceiveResponse>, ms: number): Promise<string> {
  const r = await Promise.race([it.next(), sleep(ms).then(() => "nothing" as const)]);
  if (r === "nothing") return r;
  return r.done ? "end" : String(r.value.event.case);
}

describe("receive stream takeover", () => {
  it("a stream abandoned while its claim is in flight does not replace the device's newer stream", async () => {
    const ctx = server.context;
    const base: ReceiveStreamDeps = {
      nats: ctx.nats,
      mailboxes: new Mailboxes(ctx.nats, ctx.layout.partitions),
      receivers: ctx.layout.buckets.receivers,
      log: ctx.log,
      now: Date.now,
    };
    const device = { accountId: `acct${randomBytes(6).toString("hex")}`, deviceId: 1 };

    // Stream A: opened, its claim held, then its client goes away.
    const held = heldPuts(base.receivers);
    const a = new ReceiveStream({ ...base, receivers: held.kv }, device, "stream-a", 0, 2);
    const abortA = new AbortController();
    const itA = a.run(abortA.signal);
    expect(await nextWithin(itA, 5000)).toBe("drained"); // empty mailbox
    await held.started;
    abortA.abort();
    await itA.return(undefined);

    // Stream B: the device's new stream; its claim completes.
    const b = new ReceiveStream(base, device, "stream-b", 0, 2);
    const abortB = new AbortController();
    const itB = b.run(abortB.signal);
    try {
      expect(await nextWithin(itB, 5000)).toBe("drained");
      const key = `${device.accountId}.${device.deviceId}`;
      for (let i = 0; i < 200; i++) {
        const e = await base.receivers.get(key);
        if (e && new TextDecoder().decode(e.value) === "stream-b") break;
        await sleep(10);
      }

      // A's claim lands now, after B's: it must not end B.
      held.release();
      expect(await nextWithin(itB, 1000)).toBe("nothing");
    } finally {
      abortB.abort();
      await itB.return(undefined);
    }
  });
});
