/**
 * What the Messenger accepts on the 1:1 (pairwise) path, over the real stack: a failure after
 * decryption does not lose the message (the session commits only after it is stored); a 1:1
 * message naming a group is never filed into that group; mail from a device no longer in its
 * account's verified list is refused, and that device's session and identity are forgotten.
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { useMessengerHarness } from "./support/messenger-harness.js";
import type { StoredMessage } from "../src/store/conversation-store.js";
import { groupConversation } from "../src/store/conversation-store.js";
import { createDevice, linkDevice, texts, uniqueId } from "./messenger-helpers.js";

const server = useMessengerHarness();

describe("receiving on the 1:1 path", () => {
  it("a store failure after decryption does not lose the message: the redelivery decrypts and stores it", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    const realPut = bob.stores.store.putMessage.bind(bob.stores.store);
    let failures = 0;
    bob.stores.store.putMessage = async (m: StoredMessage) => {
      if (!m.outgoing && failures < 1) {
        failures++;
        throw new Error("simulated store failure");
      }
      return realPut(m);
    };
    alice.m.start();
    bob.m.start();
    const first = await alice.m.sendText(bob.m.accountId, "first: its store fails once");
    const second = await alice.m.sendText(bob.m.accountId, "second");
    await bob.log.wait("message", (e) => e.message.id === second.id);
    await bob.log.wait("message", (e) => e.message.id === first.id);
    expect(failures).toBe(1);
    expect(texts(await bob.m.history(alice.m.accountId))).toEqual(["first: its store fails once", "second"]);
    expect(bob.log.of("session-problem").filter((e) => e.problem === "undecryptable")).toEqual([]);
    // The sessions still work both ways afterwards.
    await bob.m.sendText(alice.m.accountId, "reply");
    await alice.log.wait("message", (e) => texts([e.message])[0] === "reply");
    await alice.m.close();
    await bob.m.close();
  });

  it("a 1:1 text naming a group is not filed into that group; it is reported as a protocol violation", async () => {
    const mallory = await createDevice(server.url, uniqueId("mallory"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    mallory.m.start();
    bob.m.start();
    const groupId = new Uint8Array(16).fill(7);
    await mallory.m.sendContent(
      create(ContentSchema, { conversation: { kind: { case: "groupId", value: groupId } }, body: { case: "text", value: { body: "forged group message" } } }),
      [bob.m.accountId],
      "text",
    );
    const after = await mallory.m.sendText(bob.m.accountId, "a normal 1:1 message");
    await bob.log.wait("message", (e) => e.message.id === after.id);
    const violation = await bob.log.wait("receive-problem", (e) => e.problem === "protocol-violation");
    expect(violation.from?.accountId).toBe(mallory.m.accountId);
    expect(violation.detail).not.toContain("forged");
    expect(await bob.m.conversationHistory(groupConversation(groupId))).toEqual([]);
    expect(bob.log.of("message").map((e) => texts([e.message])[0])).toEqual(["a normal 1:1 message"]);
    await mallory.m.close();
    await bob.m.close();
  });

  it("mail from a device removed from its account's list is refused, and its session and identity are forgotten", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const alice2 = await linkDevice(alice.m, server.url);
    const bob = await createDevice(server.url, uniqueId("bob"));
    alice.m.start();
    alice2.m.start();
    bob.m.start();
    const hello = await alice2.m.sendText(bob.m.accountId, "hello from the laptop");
    await bob.log.wait("message", (e) => e.message.id === hello.id);
    const key = `${alice.m.accountId}.${alice2.m.address.deviceId}`;
    // The session commits right after the message is stored.
    await expect.poll(() => bob.stores.protocol.sessions.load(key), { timeout: 2_000, interval: 20 }).toBeDefined();

    await bob.m.stop();
    const late = await alice2.m.sendText(bob.m.accountId, "written before the revocation, read after");
    await alice2.m.flush();
    await alice.m.revokeDevice(alice2.m.address.deviceId);
    // Bob learns of the revocation (refresh), then his mailbox delivers the laptop's mail.
    await bob.m.devices(alice.m.accountId, { refresh: true });
    expect(await bob.stores.protocol.sessions.load(key)).toBeUndefined();
    expect(await bob.stores.protocol.identity.getRemoteIdentity(key)).toBeUndefined();
    bob.m.start();
    const refused = await bob.log.wait("receive-problem", (e) => e.problem === "unlisted-device");
    expect(refused.from).toEqual({ accountId: alice.m.accountId, deviceId: alice2.m.address.deviceId });
    expect((await bob.m.history(alice.m.accountId)).map((m) => m.id)).not.toContain(late.id);
    await alice.m.close();
    await alice2.m.close();
    await bob.m.close();
  });
});
