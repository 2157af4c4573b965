/**
 * Messenger scenarios over the real stack: the demo end to end, a device offline then
 * catching up (and restarting from its file store), revocation, key changes, attachments,
 * prekey replenishment and rotation.
 */
import { describe, expect, it } from "vitest";
import { useMessengerHarness } from "./support/messenger-harness.js";
import { Messenger } from "../src/messenger/messenger.js";
import { runDemo } from "../../../examples/demo-scenario.js";
import { createDevice, EventLog, linkDevice, testBackoff, texts, uniqueId } from "./messenger-helpers.js";

const server = useMessengerHarness();

describe("demo", () => {
  it("plays Alice -> Bob (phone + laptop offline at first) with receipts, read sync and catch-up", async () => {
    const lines: string[] = [];
    const r = await runDemo({ serverUrl: server.url, print: (l) => lines.push(l), suffix: `-${uniqueId("d").slice(2)}` });
    expect(r.decrypted["bob-phone"]).toEqual(expect.arrayContaining([expect.stringContaining('"Hi Bob! Lunch at noon?"')]));
    const laptop = r.decrypted["bob-laptop"];
    expect(laptop.filter((l) => l.includes("decrypted"))).toHaveLength(3);
    expect(laptop.some((l) => l.startsWith("read sync"))).toBe(true);
    expect(r.aliceStatuses).toEqual(["read", "read"]);
    // The server side of the printout carries sizes only.
    const serverLines = lines.filter((l) => l.includes("[server]"));
    expect(serverLines.length).toBeGreaterThan(5);
    expect(serverLines.some((l) => /Lunch|noon|book/.test(l))).toBe(false);
  });
});

describe("offline devices", () => {
  it("a device offline for a while catches up in order, exactly once, and keeps its history across restarts", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bobPhone = await createDevice(server.url, uniqueId("bob"));
    const laptop = await linkDevice(bobPhone.m, server.url, { file: true });
    alice.m.start();
    bobPhone.m.start();
    // The laptop is offline; ten messages arrive meanwhile (and Bob answers from his phone).
    const sent: string[] = [];
    for (let i = 0; i < 10; i++) sent.push((await alice.m.sendText(bobPhone.m.accountId, `offline message ${i}`)).id);
    await bobPhone.log.wait("message", (e) => e.message.id === sent[9]);
    await bobPhone.m.sendText(alice.m.accountId, "answer from the phone");
    await bobPhone.m.flush();

    laptop.m.start();
    await laptop.m.drained();
    await laptop.log.wait("message", (e) => texts([e.message])[0] === "answer from the phone");
    const history = await laptop.m.history(alice.m.accountId);
    expect(texts(history)).toEqual([...sent.map((_, i) => `offline message ${i}`), "answer from the phone"]);
    await laptop.m.close();

    // Restart from the file store: same history, no message twice, nothing redelivered.
    const again = await Messenger.open({ serverUrl: server.url, backoff: testBackoff, ...laptop.stores });
    const log = new EventLog(again);
    again.start();
    await again.drained();
    await alice.m.sendText(bobPhone.m.accountId, "after the restart");
    await log.wait("message", (e) => texts([e.message])[0] === "after the restart");
    expect(log.of("message")).toHaveLength(1);
    expect(texts(await again.history(alice.m.accountId))).toHaveLength(12);
    for (const d of [alice.m, bobPhone.m, again]) await d.close();
  });
});

describe("devices and keys", () => {
  it("a revoked device cannot decrypt anything sent after its revocation", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bobPhone = await createDevice(server.url, uniqueId("bob"));
    const laptop = await linkDevice(bobPhone.m, server.url);
    for (const d of [alice, bobPhone, laptop]) d.m.start();
    const before = await alice.m.sendText(bobPhone.m.accountId, "before revocation");
    await laptop.log.wait("message", (e) => e.message.id === before.id);

    await bobPhone.m.revokeDevice(laptop.m.address.deviceId);
    await laptop.log.wait("device-revoked", (e) => e.self);
    await bobPhone.log.wait("device-revoked", (e) => e.device.deviceId === laptop.m.address.deviceId);
    expect((await bobPhone.m.devices()).map((d) => d.deviceId)).toEqual([bobPhone.m.address.deviceId]);

    // Alice's cached list still names the laptop: the server answers stale, she refreshes
    // and encrypts for the phone only.
    const after = await alice.m.sendText(bobPhone.m.accountId, "after revocation");
    await bobPhone.log.wait("message", (e) => e.message.id === after.id);
    const sentEvent = await alice.log.wait("sent", (e) => e.messageId === after.id);
    expect(sentEvent.devices).toBe(1);
    // The laptop cannot even reach its mailbox any more.
    await expect(laptop.m.api.delivery.receive({})[Symbol.asyncIterator]().next()).rejects.toThrow(/not in its account's device list/);
    laptop.m.start();
    expect(laptop.m.isRunning).toBe(false);
    expect((await laptop.m.history(alice.m.accountId)).map((m) => m.id)).toEqual([before.id]);
    for (const d of [alice, bobPhone, laptop]) await d.m.close();
  });

  it("a contact's new device raises a key-change warning and changes the safety number", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    alice.m.start();
    bob.m.start();
    await alice.m.sendText(bob.m.accountId, "hi");
    await bob.log.wait("message");
    const safetyBefore = await alice.m.safetyNumber(bob.m.accountId);
    expect(await bob.m.safetyNumber(alice.m.accountId)).toBe(safetyBefore);

    const newDevice = await linkDevice(bob.m, server.url, { name: "new-phone" });
    newDevice.m.start();
    await alice.m.sendText(bob.m.accountId, "are you there?");
    const warning = await alice.log.wait("key-change", (e) => e.accountId === bob.m.accountId);
    expect(warning.changes).toEqual([expect.objectContaining({ kind: "device-added", deviceId: newDevice.m.address.deviceId })]);
    expect(warning.safetyNumberChanged).toBe(true);
    const safetyAfter = await alice.m.safetyNumber(bob.m.accountId);
    expect(safetyAfter).not.toBe(safetyBefore);
    expect(await newDevice.m.safetyNumber(alice.m.accountId)).toBe(safetyAfter);
    // The new device received the message at once.
    await newDevice.log.wait("message", (e) => texts([e.message])[0] === "are you there?");
    for (const d of [alice, bob, newDevice]) await d.m.close();
  });
});

describe("attachments", () => {
  it("uploads an encrypted file in chunks and verifies its digest on download", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    alice.m.start();
    bob.m.start();
    const file = new Uint8Array(600 * 1024).map((_, i) => (i * 31) & 0xff);
    const sent = await alice.m.sendFile(bob.m.accountId, file, { contentType: "image/png", fileName: "cat.png", caption: "my cat" });
    const got = await bob.log.wait("message", (e) => e.message.id === sent.id);
    if (got.message.body.kind !== "attachment") throw new Error("expected an attachment");
    expect(got.message.body.attachment).toMatchObject({ contentType: "image/png", fileName: "cat.png", caption: "my cat", size: file.length });
    expect(await bob.m.downloadAttachment(got.message.body.attachment)).toEqual(file);
    const tampered = { ...got.message.body.attachment, digest: new Uint8Array(32) };
    await expect(bob.m.downloadAttachment(tampered)).rejects.toMatchObject({ code: "attachment_corrupt" });
    await alice.m.close();
    await bob.m.close();
  });
});

describe("prekeys", () => {
  it("replenishes one-time prekeys when few remain and rotates the signed prekeys", async () => {
    const bob = await createDevice(server.url, uniqueId("bob"), { prekeyPolicy: { target: 3, lowWatermark: 3 } });
    bob.m.start();
    const alice = await createDevice(server.url, uniqueId("alice"));
    alice.m.start();
    await alice.m.sendText(bob.m.accountId, "uses a one-time prekey");
    await bob.log.wait("message");
    const refill = await bob.log.wait("prekeys-replenished");
    expect(refill).toMatchObject({ uploaded: 1, remaining: 3 });

    // Rotation is due at once for carol; a new contact then uses the rotated keys.
    const carol = await createDevice(server.url, uniqueId("carol"), { prekeyPolicy: { rotateAfterMs: 0 } });
    carol.m.start();
    const rotated = await carol.log.wait("signed-prekey-rotated");
    expect(rotated.signedPrekeyId).toBeGreaterThan(1);
    await alice.m.sendText(carol.m.accountId, "after rotation");
    await carol.log.wait("message", (e) => texts([e.message])[0] === "after rotation");
    for (const d of [alice, bob, carol]) await d.m.close();
  });
});
