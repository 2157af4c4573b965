/**
 * A long backlog over Receive (read by single gets, then batches: delivery/mailbox-reader.ts):
 * every message arrives once, in order, within the window, with acks freeing it; a second
 * stream after partial acks gets exactly the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, startTestServer, createTestAccount, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { bytes, deliveryOf, entriesFor, Inbox, newMessageId, text, waitUntil } from "./delivery-helpers.js";

let nats: TestNats;
let server: RunningServer;
let alice: TestAccount;
let bob: TestAccount;
const COUNT = 300;

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url);
  [alice, bob] = await Promise.all([createTestAccount(server.url, "backlog-alice"), createTestAccount(server.url, "backlog-bob")]);
  const out = deliveryOf(alice.devices[0], server.url);
  for (let i = 0; i < COUNT; i++) await out.send({ messageId: newMessageId(), sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) });
}, 120_000);
afterAll(async () => {
  await server?.close();
  await nats?.stop();
});

describe("a long backlog", () => {
  it("arrives once and in order within a window of 40, then the rest after acks, on a fresh stream", async () => {
    const client = deliveryOf(bob.devices[0], server.url);
    const first = new Inbox(client, { maxInFlight: 40 });
    const firstBatch = await first.waitForMessages(40);
    await new Promise((r) => setTimeout(r, 200));
    expect(first.messages).toHaveLength(40); // the window holds
    expect(firstBatch.map((m) => text(m.sharedBody))).toEqual(Array.from({ length: 40 }, (_, i) => `m${i}`));
    // Ack 100 in steps; the window refills each time.
    let acked = 0;
    while (acked < 100) {
      const take = first.messages.slice(acked, acked + 20);
      await client.ack({ sequences: take.map((m) => m.sequence) });
      acked += take.length;
      await first.waitForMessages(Math.min(COUNT, acked + 40));
    }
    await first.close();
    const seen = first.messages.slice(0, 100).map((m) => text(m.sharedBody));
    expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
    // A fresh stream with a big window gets exactly the 200 not acked, in order, then Drained.
    const second = new Inbox(client, { maxInFlight: 256 });
    await second.waitDrained();
    const rest = second.messages.map((m) => text(m.sharedBody));
    expect(rest).toEqual(Array.from({ length: 200 }, (_, i) => `m${i + 100}`));
    const seqs = second.messages.map((m) => Number(m.sequence));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    await waitUntil("drained", () => second.drained);
    await second.close();
  });
});
