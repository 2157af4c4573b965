/**
 * Messenger over the real stack (nats-server + server): accounts, linking, 1:1 text to every
 * device of both accounts, receipts, typing, read sync, history, attachments, revocation.
 */
import { describe, expect, it } from "vitest";
import { verifySenderCertificate } from "../src/directory/sender-certificate.js";
import { useMessengerHarness } from "./support/messenger-harness.js";
import { createDevice, linkDevice, texts, uniqueId } from "./messenger-helpers.js";

const server = useMessengerHarness();

describe("Messenger 1:1", () => {
  it("delivers a text to every device of the recipient and the sender's other devices, with receipts", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bobPhone = await createDevice(server.url, uniqueId("bob"));
    const bobLaptop = await linkDevice(bobPhone.m, server.url);
    const alice2 = await linkDevice(alice.m, server.url, { name: "tablet" });
    for (const d of [alice, alice2, bobPhone, bobLaptop]) d.m.start();

    const sent = await alice.m.sendText(bobPhone.m.accountId, "hello bob");
    const onPhone = await bobPhone.log.wait("message", (e) => e.message.id === sent.id);
    const onLaptop = await bobLaptop.log.wait("message", (e) => e.message.id === sent.id);
    const onTablet = await alice2.log.wait("message", (e) => e.message.id === sent.id);
    expect(onPhone.message.body).toEqual({ kind: "text", text: "hello bob" });
    expect(onLaptop.message.conversation).toBe(`direct:${alice.m.accountId}`);
    expect(onTablet.message).toMatchObject({ outgoing: true, conversation: `direct:${bobPhone.m.accountId}` });

    // Delivery receipts from both of Bob's devices reach both of Alice's devices.
    for (const a of [alice, alice2]) {
      for (const b of [bobPhone, bobLaptop]) {
        await a.log.wait("receipt", (e) => e.receipt === "delivered" && e.from.deviceId === b.m.address.deviceId && e.messageIds.includes(sent.id));
      }
    }
    expect((await alice.m.history(bobPhone.m.accountId))[0]).toMatchObject({ id: sent.id, status: "delivered" });

    // Read on the laptop: read receipt to Alice, read sync to the phone.
    expect(await bobLaptop.m.markRead(alice.m.accountId)).toBe(1);
    await alice.log.wait("receipt", (e) => e.receipt === "read" && e.messageIds.includes(sent.id));
    await alice2.log.wait("receipt", (e) => e.receipt === "read" && e.messageIds.includes(sent.id));
    await bobPhone.log.wait("read-sync", (e) => e.messages.some((x) => x.messageId === sent.id));
    expect((await bobPhone.m.history(alice.m.accountId))[0].read).toBe(true);
    expect((await alice.m.history(bobPhone.m.accountId))[0].status).toBe("read");
    // A receipt never reaches the wrong account's UI: Bob's devices saw no receipt events.
    expect(bobPhone.log.of("receipt")).toEqual([]);

    // Typing reaches Bob's online devices, not Alice's own.
    await bobPhone.m.sendText(alice.m.accountId, "hi alice");
    await alice.log.wait("message", (e) => texts([e.message]).includes("hi alice"));
    expect(await alice.m.setTyping(bobPhone.m.accountId, true)).toBe(true);
    await bobPhone.log.wait("typing", (e) => e.started && e.from.accountId === alice.m.accountId);
    await bobLaptop.log.wait("typing", (e) => e.started);
    expect(alice2.log.of("typing")).toEqual([]);

    // History is the same on every device of both accounts.
    await alice2.log.wait("message", (e) => texts([e.message]).includes("hi alice"));
    await bobLaptop.log.wait("message", (e) => texts([e.message]).includes("hi alice"));
    for (const [d, peer] of [
      [alice, bobPhone],
      [alice2, bobPhone],
      [bobPhone, alice],
      [bobLaptop, alice],
    ] as const) {
      expect(texts(await d.m.history(peer.m.accountId))).toEqual(["hello bob", "hi alice"]);
    }
    for (const d of [alice, alice2, bobPhone, bobLaptop]) await d.m.close();
  });

  it("fetches, checks and caches this device's sender certificate", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const first = await alice.m.senderCertificate();
    expect(await alice.m.senderCertificate()).toBe(first); // cached
    const keys = (await alice.m.api.open.getCertificateKeys({})).keys;
    const identityKey = (await alice.m.protocol.identity.getLocalIdentity())!.signingKey;
    expect((await verifySenderCertificate(alice.m.provider, first, keys, Date.now(), { ...alice.m.address, identityKey })).accountId).toBe(alice.m.accountId);
    await alice.m.close();
  });
});
