/**
 * The outbox against a recipient device that cannot be reached (linked, but no prekeys
 * uploaded yet: ClaimKeyBundles answers FAILED_PRECONDITION for it): the message still reaches
 * the recipient's other devices (the server does not count the unready device as missing),
 * and a message to a third person never waits behind it.
 */
import { describe, expect, it } from "vitest";
import { useMessengerHarness } from "./support/messenger-harness.js";
import { Messenger, createMemoryMessengerStores } from "../src/messenger/messenger.js";
import { createDevice, testBackoff, uniqueId } from "./messenger-helpers.js";

const server = useMessengerHarness();

describe("outbox lanes", () => {
  it("a recipient device without prekeys is left out and does not block the queue", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    const carol = await createDevice(server.url, uniqueId("carol"));
    // Bob links a second device that never finishes its setup (no prekeys uploaded).
    const pending = await Messenger.startLink({
      serverUrl: server.url,
      accountId: bob.m.accountId,
      deviceName: "tablet",
      backoff: testBackoff,
      ...createMemoryMessengerStores(),
    });
    await bob.m.linkDevice(pending.code);
    expect((await alice.m.devices(bob.m.accountId, { refresh: true })).length).toBe(2);
    alice.m.start();
    bob.m.start();
    carol.m.start();
    const toBob = await alice.m.sendText(bob.m.accountId, "to bob, whose tablet is not ready");
    const toCarol = await alice.m.sendText(carol.m.accountId, "to carol");
    await carol.log.wait("message", (e) => e.message.id === toCarol.id);
    await bob.log.wait("message", (e) => e.message.id === toBob.id);
    const sent = await alice.log.wait("sent", (e) => e.messageId === toBob.id);
    expect(sent.devices).toBe(1);
    expect(alice.log.of("send-failed")).toEqual([]);
    await alice.m.close();
    await bob.m.close();
    await carol.m.close();
  });
});
