/**
 * Hints skipped when the device's current stream is on the instance that served the call:
 * a Send pushes the record to it in memory and an Ack tells it directly, so neither
 * publishes a hint (a NATS message, and a wake-up for the instance's own echo). Two
 * instances on one nats-server; a probe subscribed to the device's hint subject sees exactly
 * what was published.
 *
 * The race this must not lose mail in: a newer stream of the device, opened elsewhere and
 * waiting at its head before its claim landed, gets no hint for mail pushed to the old one.
 * The old stream, replaced, hints the device as it ends with that mail unacked, so the new
 * stream reads it at once (not at its periodic check).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestAccount, startTestNats, startTestServer, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { RunningServer } from "../src/server.js";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { notifySubject } from "../src/nats/layout.js";
import { decodeSignal, type DeviceSignal } from "../src/delivery/device-signal.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { ReceiveStream } from "../src/delivery/receive-stream.js";
import { bytes, deliveryOf, entriesFor, heldPuts, Inbox, newMessageId, storedOf, text, waitUntil } from "./delivery-helpers.js";

const SECRET = "local-push-hints-secret-local-push-hints!";
let nats: TestNats;
let a: RunningServer;
let b: RunningServer;
let probe: Nats;
let alice: TestAccount;
let bob: TestAccount;

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  [a, b] = await Promise.all([startTestServer(nats.url, { tokenSecret: SECRET }), startTestServer(nats.url, { tokenSecret: SECRET })]);
  probe = await connectNats(nats.url, "hint-probe");
  [alice, bob] = await Promise.all([createTestAccount(a.url, "hints-alice"), createTestAccount(a.url, "hints-bob")]);
});
afterAll(async () => {
  await probe?.nc.close();
  await Promise.all([a?.close(), b?.close()]);
  await nats?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every hint published for bob's first device from now on. */
async function watchHints(): Promise<{ seen: DeviceSignal[]; stop: () => void }> {
  const { accountId, deviceId } = bob.devices[0].address;
  const seen: DeviceSignal[] = [];
  const sub = probe.nc.subscribe(notifySubject(accountId, deviceId), {
    callback: (err, msg) => {
      const s = err ? undefined : decodeSignal(msg.data);
      if (s) seen.push(s);
    },
  });
  await probe.nc.flush();
  return { seen, stop: () => sub.unsubscribe() };
}

/** Bob's stream on instance `at`, once it claimed the device (its takeover hint went out). */
async function currentStreamOn(at: RunningServer, hints: { seen: DeviceSignal[] }): Promise<Inbox> {
  const before = hints.seen.filter((s) => s.kind === "takeover").length;
  const inbox = new Inbox(deliveryOf(bob.devices[0], at.url));
  await inbox.waitDrained();
  await waitUntil("the stream's claim", () => hints.seen.filter((s) => s.kind === "takeover").length > before);
  return inbox;
}

const kinds = (seen: DeviceSignal[]) => seen.map((s) => s.kind).filter((k) => k !== "takeover");

describe("hints when the device's current stream is local", () => {
  it("a Send and an Ack served where the stream is publish none; served by another instance they do", async () => {
    const hints = await watchHints();
    const inbox = await currentStreamOn(a, hints);
    try {
      storedOf(
        await deliveryOf(alice.devices[0], a.url).send({ messageId: newMessageId(), sharedBody: bytes("local"), entries: entriesFor([bob.devices[0]]) }),
      );
      const [first] = await inbox.waitForMessages(1);
      await deliveryOf(bob.devices[0], a.url).ack({ sequences: [first.sequence] });
      // Anything published by now has reached the probe once a round trip through the same server is done.
      await a.context.nats.nc.flush();
      await probe.nc.flush();
      expect(kinds(hints.seen)).toEqual([]);

      // Instance b has no stream of bob's: its Send hints with the sequence, its Ack with the
      // acked ones, before its delete ("acking") and after it ("acked").
      const stored = storedOf(
        await deliveryOf(alice.devices[0], b.url).send({ messageId: newMessageId(), sharedBody: bytes("remote"), entries: entriesFor([bob.devices[0]]) }),
      );
      const seq = Number(stored.entries[0].sequence);
      const messages = await inbox.waitForMessages(2);
      expect(messages.map((m) => text(m.sharedBody))).toEqual(["local", "remote"]);
      await deliveryOf(bob.devices[0], b.url).ack({ sequences: [messages[1].sequence] });
      await waitUntil("the acked hint", () => hints.seen.some((s) => s.kind === "acked"));
      expect(hints.seen.filter((s) => s.kind !== "takeover")).toEqual([
        { kind: "mail", seq },
        { kind: "acking", sequences: [seq] },
        { kind: "acked", sequences: [seq] },
      ]);
    } finally {
      hints.stop();
      await inbox.close();
    }
  });

  it("mail pushed to a stream that a newer one replaces reaches the newer one at once", async () => {
    const hints = await watchHints();
    const old = await currentStreamOn(a, hints);
    // The newer stream on b: subscribed and at the head of the (empty) mailbox, its claim held.
    const ctx = b.context;
    const held = heldPuts(ctx.layout.buckets.receivers);
    const newer = new ReceiveStream(
      { nats: ctx.nats, mailboxes: new Mailboxes(ctx.nats, ctx.layout.partitions), receivers: held.kv, log: ctx.log, now: Date.now },
      bob.devices[0].address,
      "newer-stream",
      0,
      16,
    );
    const abort = new AbortController();
    const got: ReceiveResponse[] = [];
    const pumped = (async () => {
      for await (const ev of newer.run(abort.signal)) got.push(ev);
    })().catch(() => {});
    const cases = () => got.map((e) => e.event.case);
    try {
      await waitUntil("the newer stream at its head", () => cases().includes("drained"));
      await held.started;
      storedOf(
        await deliveryOf(alice.devices[0], a.url).send({ messageId: newMessageId(), sharedBody: bytes("raced"), entries: entriesFor([bob.devices[0]]) }),
      );
      await old.waitForMessages(1);
      // Pushed to the old stream in memory, no hint: the newer stream has nothing yet.
      await sleep(300);
      expect(cases()).toEqual(["drained"]);
      expect(kinds(hints.seen)).toEqual([]);
      // The newer stream's claim lands: the old one is replaced and, ending with the mail
      // unacked, hints the device; the newer one reads it (the hub's check is 30 s away).
      held.release();
      await waitUntil("the old stream replaced", () => old.replaced);
      await waitUntil("the mail on the newer stream", () => cases().includes("message"), 5000);
      const ev = got.find((e) => e.event.case === "message")!.event;
      expect(text(ev.case === "message" ? ev.value.sharedBody : new Uint8Array())).toBe("raced");
      expect(kinds(hints.seen)).toEqual(["mail"]);
    } finally {
      abort.abort();
      await pumped;
      hints.stop();
      await old.close();
    }
  });
});
