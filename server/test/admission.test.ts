/**
 * Admission control: past its limit of stores in flight an instance sheds Sends with
 * RESOURCE_EXHAUSTED and a retry-after header, before storing anything, instead of queueing
 * them behind deliveries. A shed Send retried later is stored once; nothing else is touched.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { startTestNats, startTestServer, createTestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { RETRY_AFTER_HEADER } from "../src/delivery/send.js";
import { bytes, deliveryOf, entriesFor, mailboxSequences, newMessageId, storedOf, WAIT } from "./delivery-helpers.js";

let nats: TestNats;
let server: RunningServer;
let probe: Nats;
beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url, {}, { delivery: { maxStoresInFlight: 4, limits: { sendsPerMinute: 100_000 } } });
  probe = await connectNats(nats.url, "admission-probe");
});
afterAll(async () => {
  await probe?.nc.close();
  await server?.close();
  await nats?.stop();
});

describe("admission control", () => {
  it("sheds Sends past the limit with RESOURCE_EXHAUSTED and retry info, stores exactly the accepted ones, and a retry later is stored once", async () => {
    const alice = await createTestAccount(server.url, "adm-alice", { oneTimePrekeys: 1 });
    const bob = await createTestAccount(server.url, "adm-bob", { oneTimePrekeys: 1 });
    const out = deliveryOf(alice.devices[0], server.url);
    const reqs = Array.from({ length: 20 }, (_, i) => ({ messageId: newMessageId(), sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) }));
    // One Send first, so the device lists involved are in the instance's memory.
    const warm = storedOf(await out.send({ messageId: newMessageId(), sharedBody: bytes("warm"), entries: entriesFor(bob.devices) })).entries[0].sequence;
    // Nothing of the warm-up left in flight (its outcome record is written without waiting).
    await vi.waitFor(() => expect(server.context.nats.publisher.inFlight).toBe(0), WAIT);
    // NATS frozen: the first Sends' stores stay in flight, so the instance is at its limit.
    nats.pause!();
    const pending = reqs.map((r) =>
      out.send(r).then(
        (res) => ({ ok: storedOf(res).entries[0].sequence }),
        (e) => ({ err: ConnectError.from(e) }),
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
    nats.resume!();
    const answers = await Promise.all(pending);
    const shed = answers.flatMap((a, i) => ("err" in a ? [i] : []));
    for (const i of shed) {
      const err = (answers[i] as { err: ConnectError }).err;
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.rawMessage).toMatch(/server busy: .* nothing was stored, retry after \d+ ms/);
      expect(Number(err.metadata.get(RETRY_AFTER_HEADER))).toBeGreaterThan(0);
    }
    const accepted = answers.flatMap((a) => ("ok" in a ? [Number(a.ok)] : []));
    expect({ accepted: accepted.length, shed: shed.length }).toEqual({ accepted: 4, shed: 16 });
    expect(await mailboxSequences(probe, server.context.layout.partitions, bob.devices[0].address)).toEqual([Number(warm), ...accepted.sort((x, y) => x - y)]);
    // The shed ones, retried one at a time, are all stored, once.
    for (const i of shed) storedOf(await out.send({ ...reqs[i], retry: true }));
    expect(await mailboxSequences(probe, server.context.layout.partitions, bob.devices[0].address)).toHaveLength(21);
  });
});
