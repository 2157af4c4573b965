/**
 * Send checks its sender's token, then that the sender is still listed, from the device-list
 * read Send makes anyway (no separate auth read). A revoked device is locked out of Send on
 * every instance as soon as RevokeDevice returns: new messages, retries of a stored
 * message_id, and ephemeral sends alike, before anything is stored.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { startTestNats, startTestServer, createTestAccount, type TestNats } from "@sealpost/test-support";
import { revokeDeviceChange } from "@sealpost/client/directory";
import type { RunningServer } from "../src/server.js";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { bytes, deliveryOf, entriesFor, mailboxSequences, newMessageId, storedOf } from "./delivery-helpers.js";

let nats: TestNats;
let a: RunningServer;
let b: RunningServer;
let probe: Nats;

beforeAll(async () => {
  nats = await startTestNats();
  a = await startTestServer(nats.url);
  b = await startTestServer(nats.url);
  probe = await connectNats(nats.url, "send-revoked-probe");
});
afterAll(async () => {
  await probe?.nc.close();
  await a?.close();
  await b?.close();
  await nats?.stop();
});

describe("Send from a revoked device", () => {
  it("is UNAUTHENTICATED on every instance at once, for new, retried and ephemeral sends, and stores nothing", async () => {
    const alice = await createTestAccount(a.url, "revsend-alice", { devices: 2, oneTimePrekeys: 1 });
    const bob = await createTestAccount(a.url, "revsend-bob", { devices: 1, oneTimePrekeys: 1 });
    const [keep, gone] = alice.devices;
    const toBob = () => entriesFor([...bob.devices, keep]);
    const retried = newMessageId();
    // Listed: stored.
    expect(storedOf(await deliveryOf(gone, b.url).send({ messageId: retried, sharedBody: bytes("before"), entries: toBob() })).entries).toHaveLength(2);

    const change = await revokeDeviceChange(
      alice.provider,
      alice.deviceList,
      { deviceId: keep.address.deviceId, signingSeed: keep.keys.signingSeed },
      gone.address.deviceId,
      Date.now(),
    );
    await keep.directory.revokeDevice({ deviceList: change });
    const before = await mailboxSequences(probe, a.context.layout.partitions, bob.devices[0].address);

    for (const url of [a.url, b.url]) {
      const out = deliveryOf(gone, url);
      // Handlers attached at once: the answers may all come back before the first is looked at.
      const attempts = [
        out.send({ messageId: newMessageId(), sharedBody: bytes("after"), entries: toBob() }),
        out.send({ messageId: retried, sharedBody: bytes("before"), entries: toBob() }),
        out.send({ messageId: newMessageId(), sharedBody: bytes("typing"), entries: toBob(), ephemeral: true }),
      ].map((p) =>
        p.then(
          () => undefined,
          (e) => ConnectError.from(e),
        ),
      );
      for (const p of attempts) {
        const err = await p;
        expect(err?.code).toBe(Code.Unauthenticated);
        expect(err?.rawMessage).toContain("revoked");
      }
    }
    expect(await mailboxSequences(probe, a.context.layout.partitions, bob.devices[0].address)).toEqual(before);
    // The account's remaining device still sends (to bob only now).
    expect(
      storedOf(await deliveryOf(keep, a.url).send({ messageId: newMessageId(), sharedBody: bytes("still"), entries: entriesFor(bob.devices) })).entries,
    ).toHaveLength(1);
  });
});
