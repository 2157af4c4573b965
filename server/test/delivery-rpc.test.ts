/**
 * Delivery over the real stack: two server instances sharing one nats-server, real accounts
 * from the directory, connect-es clients. Any instance serves any device.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createHash } from "node:crypto";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { startTestNats, startTestServer, createTestAccount, plainTransport, type TestAccount, type TestNats } from "@sealpost/test-support";
import { revokeDeviceChange } from "@sealpost/client/directory";
import type { RunningServer } from "../src/server.js";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { bytes, deliveryOf, entriesFor, Inbox, mailboxSequences, newMessageId, storedOf, text, waitUntil } from "./delivery-helpers.js";

let nats: TestNats;
let a: RunningServer;
let b: RunningServer;
let probe: Nats;
let n = 0;
/** Fresh accounts per test, so tests do not see each other's mail. */
async function accounts(devices: number[]): Promise<TestAccount[]> {
  const id = ++n;
  return Promise.all(devices.map((d, i) => createTestAccount(a.url, `rpc${id}-u${i}`, { devices: d, oneTimePrekeys: 1 })));
}

beforeAll(async () => {
  nats = await startTestNats();
  a = await startTestServer(nats.url);
  b = await startTestServer(nats.url);
  probe = await connectNats(nats.url, "delivery-test-probe");
});
afterAll(async () => {
  await probe?.nc.close();
  await a?.close();
  await b?.close();
  await nats?.stop();
});

const partitions = () => a.context.layout.partitions;

describe("Send and Receive across instances", () => {
  it("delivers to an offline device that connects to the other instance: everything once, in order, then drained", async () => {
    const [alice, bob] = await accounts([2, 2]);
    const out = deliveryOf(alice.devices[0], a.url);
    const sent: string[] = [];
    for (let i = 0; i < 8; i++) {
      const body = `body-${i}`;
      const res = await out.send({ messageId: newMessageId(), sharedBody: bytes(body), entries: entriesFor([...bob.devices, alice.devices[1]], `m${i}`) });
      expect(storedOf(res).entries.map((e) => e.device?.accountId)).toEqual([bob.accountId, bob.accountId, alice.accountId]);
      sent.push(body);
    }
    const inbox = new Inbox(deliveryOf(bob.devices[1], b.url));
    await inbox.waitDrained();
    const got = inbox.messages;
    expect(got.map((m) => text(m.sharedBody))).toEqual(sent);
    expect(got.map((m) => text(m.entry))).toEqual(sent.map((_, i) => `m${i}->${bob.accountId}/${bob.devices[1].address.deviceId}`));
    expect(got.every((m, i) => i === 0 || m.sequence > got[i - 1].sequence)).toBe(true);
    expect(got[0].sender).toMatchObject({ accountId: alice.accountId, deviceId: alice.devices[0].address.deviceId });
    const drained = inbox.events.find((e) => e.event.case === "drained")!;
    expect(drained.event.value).toMatchObject({ lastSequence: got[got.length - 1].sequence });
    // Then live: a new message arrives on the open stream.
    await out.send({ messageId: newMessageId(), sharedBody: bytes("live"), entries: entriesFor([...bob.devices, alice.devices[1]]) });
    await inbox.waitForMessages(9);
    expect(text(inbox.messages[8].sharedBody)).toBe("live");
    await inbox.close();
    // The sender's own other device got its copy too.
    const sync = new Inbox(deliveryOf(alice.devices[1], a.url));
    await sync.waitDrained();
    expect(sync.messages.map((m) => text(m.sharedBody))).toEqual([...sent, "live"]);
    await sync.close();
  });

  it("stores a large fan-out body once and references it from each mailbox", async () => {
    const [alice, bob, carol] = await accounts([1, 3, 3]);
    const body = new Uint8Array(64 * 1024).fill(7);
    const before = (await probe.jsm.streams.info("SP_BODIES")).state.messages;
    await deliveryOf(alice.devices[0], a.url).send({ messageId: newMessageId(), sharedBody: body, entries: entriesFor([...bob.devices, ...carol.devices]) });
    expect((await probe.jsm.streams.info("SP_BODIES")).state.messages).toBe(before + 1);
    for (const d of [bob.devices[2], carol.devices[0]]) {
      const inbox = new Inbox(deliveryOf(d, b.url));
      await inbox.waitDrained();
      expect(inbox.messages).toHaveLength(1);
      expect(createHash("sha256").update(inbox.messages[0].sharedBody).digest("hex")).toBe(createHash("sha256").update(body).digest("hex"));
      await inbox.close();
    }
  });

  it("acked mail is gone; unacked mail comes again after a reconnect, to either instance", async () => {
    const [alice, bob] = await accounts([1, 1]);
    const out = deliveryOf(alice.devices[0], a.url);
    for (let i = 0; i < 4; i++) await out.send({ messageId: newMessageId(), sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) });
    const first = new Inbox(deliveryOf(bob.devices[0], a.url));
    await first.waitDrained();
    const seqs = first.messages.map((m) => m.sequence);
    expect(seqs).toHaveLength(4);
    // Ack the first two on the *other* instance.
    const ack = await deliveryOf(bob.devices[0], b.url).ack({ sequences: seqs.slice(0, 2) });
    expect(ack.deleted).toBe(2);
    expect(await mailboxSequences(probe, partitions(), bob.devices[0].address)).toEqual(seqs.slice(2).map(Number));
    await first.close();

    const again = new Inbox(deliveryOf(bob.devices[0], b.url));
    await again.waitDrained();
    expect(again.messages.map((m) => text(m.sharedBody))).toEqual(["m2", "m3"]);
    // Acking again (already gone) is not an error and deletes nothing more.
    expect((await deliveryOf(bob.devices[0], a.url).ack({ sequences: seqs })).deleted).toBe(2);
    await again.close();
    const empty = new Inbox(deliveryOf(bob.devices[0], a.url));
    await empty.waitDrained();
    expect(empty.messages).toHaveLength(0);
    expect(empty.events[0].event).toMatchObject({ case: "drained", value: { lastSequence: 0n } });
    await empty.close();
  });

  it("resumes after a cursor: after_sequence skips older unacked mail without deleting it", async () => {
    const [alice, bob] = await accounts([1, 1]);
    const out = deliveryOf(alice.devices[0], a.url);
    const stored = [];
    for (let i = 0; i < 3; i++)
      stored.push(storedOf(await out.send({ messageId: newMessageId(), sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) })));
    const inbox = new Inbox(deliveryOf(bob.devices[0], b.url), { afterSequence: stored[0].entries[0].sequence });
    await inbox.waitDrained();
    expect(inbox.messages.map((m) => text(m.sharedBody))).toEqual(["m1", "m2"]);
    await inbox.close();
    expect(await mailboxSequences(probe, partitions(), bob.devices[0].address)).toHaveLength(3);
  });

  it("a retried Send (same message_id) is stored once and answers the original outcome", async () => {
    const [alice, bob] = await accounts([2, 2]);
    const out = deliveryOf(alice.devices[0], a.url);
    const req = { messageId: newMessageId(), sharedBody: bytes("once"), entries: entriesFor([...bob.devices, alice.devices[1]]) };
    const first = storedOf(await out.send(req));
    expect(first.duplicate).toBe(false);
    // Sequentially on the other instance, then three concurrent retries.
    const retry = storedOf(await deliveryOf(alice.devices[0], b.url).send(req));
    expect(retry.duplicate).toBe(true);
    expect(retry.entries).toEqual(first.entries);
    expect(retry.serverTimestampMs).toBe(first.serverTimestampMs);
    const concurrent = await Promise.all([1, 2, 3].map(() => out.send(req)));
    for (const r of concurrent) expect(storedOf(r).entries).toEqual(first.entries);
    for (const d of [...bob.devices, alice.devices[1]]) {
      expect(await mailboxSequences(probe, partitions(), d.address)).toHaveLength(1);
    }
    // A different message id is a different message.
    await out.send({ ...req, messageId: newMessageId() });
    expect(await mailboxSequences(probe, partitions(), bob.devices[0].address)).toHaveLength(2);
  });

  it("concurrent first sends of one message_id agree on the outcome and store once", async () => {
    const [alice, bob] = await accounts([1, 3]);
    const req = { messageId: newMessageId(), sharedBody: bytes("race"), entries: entriesFor(bob.devices) };
    const outs = await Promise.all([a, b, a, b].map((s) => deliveryOf(alice.devices[0], s.url).send(req)));
    const first = storedOf(outs[0]).entries;
    for (const r of outs) expect(storedOf(r).entries).toEqual(first);
    for (const d of bob.devices) expect(await mailboxSequences(probe, partitions(), d.address)).toHaveLength(1);
  });

  it("answers MismatchedDevices (missing, stale, extra) and stores nothing; the corrected retry is stored", async () => {
    const [alice, bob] = await accounts([2, 3]);
    // Revoke bob's third device: its id becomes stale.
    const bob3 = bob.devices[2];
    const revoked = await revokeDeviceChange(
      bob.provider,
      bob.deviceList,
      { deviceId: bob.devices[0].address.deviceId, signingSeed: bob.devices[0].keys.signingSeed },
      bob3.address.deviceId,
      Date.now(),
    );
    const rv = await bob.devices[0].directory.revokeDevice({ deviceList: revoked });
    const out = deliveryOf(alice.devices[0], a.url);
    const messageId = newMessageId();
    // bob1 present, bob2 missing, bob3 stale, bob 77 extra; alice2 missing.
    const res = await out.send({
      messageId,
      sharedBody: bytes("x"),
      entries: entriesFor([bob.devices[0], bob3, { accountId: bob.accountId, deviceId: 77 }]),
    });
    expect(res.outcome.case).toBe("mismatchedDevices");
    const accountsOut = res.outcome.case === "mismatchedDevices" ? res.outcome.value.accounts : [];
    const byId = Object.fromEntries(accountsOut.map((m) => [m.accountId, m]));
    expect(byId[bob.accountId]).toMatchObject({
      missingDeviceIds: [bob.devices[1].address.deviceId],
      staleDeviceIds: [bob3.address.deviceId],
      extraDeviceIds: [77],
      currentVersion: rv.version,
    });
    expect(byId[alice.accountId]).toMatchObject({ missingDeviceIds: [alice.devices[1].address.deviceId], staleDeviceIds: [], extraDeviceIds: [] });
    for (const d of [...bob.devices.slice(0, 2), alice.devices[1]]) expect(await mailboxSequences(probe, partitions(), d.address)).toEqual([]);
    // Refetched and resent with the same message id: stored.
    const ok = storedOf(await out.send({ messageId, sharedBody: bytes("x"), entries: entriesFor([...bob.devices.slice(0, 2), alice.devices[1]]) }));
    expect(ok.duplicate).toBe(false);
    // An unknown account is NOT_FOUND.
    const err = await out
      .send({ messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor([{ accountId: "nobody-here", deviceId: 1 }, alice.devices[1]]) })
      .catch((e) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.NotFound, rawMessage: "account nobody-here not found" });
  });

  it("a revoked device's mailbox is purged and its open stream ends", async () => {
    const [alice, bob] = await accounts([1, 2]);
    const out = deliveryOf(alice.devices[0], a.url);
    for (let i = 0; i < 3; i++) await out.send({ messageId: newMessageId(), sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) });
    const bob2 = bob.devices[1];
    expect(await mailboxSequences(probe, partitions(), bob2.address)).toHaveLength(3);
    const live = new Inbox(deliveryOf(bob2, b.url));
    await live.waitDrained();
    const revoked = await revokeDeviceChange(
      bob.provider,
      bob.deviceList,
      { deviceId: bob.devices[0].address.deviceId, signingSeed: bob.devices[0].keys.signingSeed },
      bob2.address.deviceId,
      Date.now(),
    );
    await bob.devices[0].directory.revokeDevice({ deviceList: revoked });
    expect(await mailboxSequences(probe, partitions(), bob2.address)).toEqual([]);
    await waitUntil("the revoked device's stream to end", () => live.ended);
    expect(live.error?.code).toBe(Code.Unauthenticated);
    // The other device's mail is untouched.
    expect(await mailboxSequences(probe, partitions(), bob.devices[0].address)).toHaveLength(3);
  });

  it("a second stream of a device replaces the first (across instances)", async () => {
    const [alice, bob] = await accounts([1, 1]);
    const first = new Inbox(deliveryOf(bob.devices[0], a.url));
    await first.waitDrained();
    const second = new Inbox(deliveryOf(bob.devices[0], b.url));
    await second.waitDrained();
    await waitUntil("the first stream to be replaced", () => first.ended);
    expect(first.replaced).toBe(true);
    expect(first.error).toBeUndefined();
    await deliveryOf(alice.devices[0], a.url).send({ messageId: newMessageId(), sharedBody: bytes("after"), entries: entriesFor(bob.devices) });
    await second.waitForMessages(1);
    expect(second.ended).toBe(false);
    // And a third on the same instance as the second replaces it.
    const third = new Inbox(deliveryOf(bob.devices[0], b.url));
    await waitUntil("the second stream to be replaced", () => second.ended);
    expect(second.replaced).toBe(true);
    await third.waitForMessages(1);
    await third.close();
  });

  it("flow control: a slow receiver holds at most max_in_flight unacked messages; acks on any instance release the window", async () => {
    const [alice, bob] = await accounts([1, 1]);
    const out = deliveryOf(alice.devices[0], a.url);
    for (let i = 0; i < 10; i++) await out.send({ messageId: newMessageId(), sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) });
    const inbox = new Inbox(deliveryOf(bob.devices[0], a.url), { maxInFlight: 3 });
    await inbox.waitForMessages(3);
    // More mail arrives while the window is full; the stream still waits.
    await out.send({ messageId: newMessageId(), sharedBody: bytes("m10"), entries: entriesFor(bob.devices) });
    await new Promise((r) => setTimeout(r, 300));
    expect(inbox.messages).toHaveLength(3);
    expect(inbox.drained).toBe(false);
    const ackB = deliveryOf(bob.devices[0], b.url);
    await ackB.ack({ sequences: [inbox.messages[0].sequence] });
    await inbox.waitForMessages(4);
    await new Promise((r) => setTimeout(r, 200));
    expect(inbox.messages).toHaveLength(4);
    // Ack as we go until everything is through.
    while (inbox.messages.length < 11) {
      const pending = inbox.messages.slice(-3).map((m) => m.sequence);
      await ackB.ack({ sequences: pending });
      await inbox.waitForMessages(Math.min(11, inbox.messages.length + 1));
    }
    await inbox.waitDrained();
    expect(inbox.messages.map((m) => text(m.sharedBody))).toEqual(Array.from({ length: 11 }, (_, i) => `m${i}`));
    await inbox.close();
  });

  it("sends Drained after the backlog even when its last message fills the window", async () => {
    const [alice, bob] = await accounts([1, 1]);
    const out = deliveryOf(alice.devices[0], a.url);
    for (let i = 0; i < 2; i++) await out.send({ messageId: newMessageId(), sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) });
    const inbox = new Inbox(deliveryOf(bob.devices[0], b.url), { maxInFlight: 2 });
    await inbox.waitDrained();
    expect(inbox.events.map((e) => e.event.case)).toEqual(["message", "message", "drained"]);
    expect(inbox.events[2].event.value).toMatchObject({ lastSequence: inbox.messages[1].sequence });
    await inbox.close();
  });

  it("ephemeral sends reach connected devices only and are never stored", async () => {
    const [alice, bob] = await accounts([1, 2]);
    const live = new Inbox(deliveryOf(bob.devices[0], b.url));
    await live.waitDrained();
    const res = storedOf(
      await deliveryOf(alice.devices[0], a.url).send({
        messageId: newMessageId(),
        sharedBody: bytes("typing"),
        entries: entriesFor(bob.devices),
        ephemeral: true,
      }),
    );
    expect(res.entries.map((e) => e.sequence)).toEqual([0n, 0n]);
    await live.waitForMessages(1);
    expect(live.messages[0]).toMatchObject({ ephemeral: true, sequence: 0n });
    expect(text(live.messages[0].sharedBody)).toBe("typing");
    await live.close();
    for (const d of bob.devices) expect(await mailboxSequences(probe, partitions(), d.address)).toEqual([]);
  });
});

describe("GetLimits", () => {
  it("answers the enforced limits without authentication", async () => {
    const res = await createClient(DeliveryService, plainTransport(b.url)).getLimits({});
    expect(res.limits).toMatchObject({
      maxBodyBytes: 262144,
      maxEntryBytes: 4096,
      maxEntriesPerSend: 1000,
      maxInFlight: 256,
      mailboxRetentionSeconds: 2592000,
      maxAttachmentBytes: 104857600n,
      attachmentChunkBytes: 262144,
      sendsPerMinute: 6000,
    });
  });
});

describe("attachments", () => {
  it("uploads in chunks on one instance and downloads in order on the other, resumable", async () => {
    const [alice, bob] = await accounts([1, 1]);
    const data = new Uint8Array(600 * 1024).map((_, i) => (i * 31) & 255);
    const sha256 = new Uint8Array(createHash("sha256").update(data).digest());
    const up = deliveryOf(alice.devices[0], a.url);
    const att = await up.createAttachment({ size: BigInt(data.length), sha256 });
    expect(att.chunkCount).toBe(3);
    expect(att.attachmentId).toMatch(/^[A-Za-z0-9_-]{24}$/);
    // Out of order, one retried.
    for (const i of [2, 0, 1, 0]) {
      await up.putAttachmentChunk({ attachmentId: att.attachmentId, index: i, data: data.subarray(i * att.chunkBytes, (i + 1) * att.chunkBytes) });
    }
    const down = deliveryOf(bob.devices[0], b.url);
    const early = await collect(down.downloadAttachment({ attachmentId: att.attachmentId })).catch((e) => ConnectError.from(e));
    expect(early).toMatchObject({ code: Code.FailedPrecondition });
    expect((await up.completeAttachment({ attachmentId: att.attachmentId })).size).toBe(BigInt(data.length));
    const chunks = await collect(down.downloadAttachment({ attachmentId: att.attachmentId }));
    expect(chunks.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(Buffer.concat(chunks.map((c) => c.data)).equals(Buffer.from(data))).toBe(true);
    const resumed = await collect(down.downloadAttachment({ attachmentId: att.attachmentId, startChunk: 2 }));
    expect(resumed.map((c) => c.index)).toEqual([2]);
    // Complete is idempotent; chunks can no longer change.
    await up.completeAttachment({ attachmentId: att.attachmentId });
    const late = await up
      .putAttachmentChunk({ attachmentId: att.attachmentId, index: 0, data: data.subarray(0, att.chunkBytes) })
      .catch((e) => ConnectError.from(e));
    expect(late).toMatchObject({ code: Code.FailedPrecondition });
  });

  it("rejects a missing chunk, a wrong hash, a wrong chunk size, an oversize attachment and a stranger's upload", async () => {
    const [alice, bob] = await accounts([1, 1]);
    const up = deliveryOf(alice.devices[0], a.url);
    const data = new Uint8Array(300 * 1024).fill(1);
    const att = await up.createAttachment({ size: BigInt(data.length), sha256: new Uint8Array(32) });
    const err = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e) => ConnectError.from(e),
      );
    expect(await err(up.completeAttachment({ attachmentId: att.attachmentId }))).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: `chunk 0 of attachment ${att.attachmentId} is missing; put it and complete again`,
    });
    expect(await err(up.putAttachmentChunk({ attachmentId: att.attachmentId, index: 0, data: data.subarray(0, 10) }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "chunk 0 must be 262144 bytes, got 10",
    });
    expect(await err(up.putAttachmentChunk({ attachmentId: att.attachmentId, index: 2, data: data.subarray(0, 10) }))).toMatchObject({
      code: Code.InvalidArgument,
    });
    await up.putAttachmentChunk({ attachmentId: att.attachmentId, index: 0, data: data.subarray(0, 262144) });
    await up.putAttachmentChunk({ attachmentId: att.attachmentId, index: 1, data: data.subarray(262144) });
    expect(await err(up.completeAttachment({ attachmentId: att.attachmentId }))).toMatchObject({ code: Code.FailedPrecondition });
    expect(
      await err(deliveryOf(bob.devices[0], b.url).putAttachmentChunk({ attachmentId: att.attachmentId, index: 0, data: data.subarray(0, 262144) })),
    ).toMatchObject({
      code: Code.PermissionDenied,
    });
    expect(await err(up.createAttachment({ size: 104857601n, sha256: new Uint8Array(32) }))).toMatchObject({
      code: Code.ResourceExhausted,
      rawMessage: "size 104857601 exceeds max_attachment_bytes 104857600",
    });
    expect(await err(up.completeAttachment({ attachmentId: "AAAAAAAAAAAAAAAAAAAAAAAA" }))).toMatchObject({ code: Code.NotFound });
    expect(await err(up.completeAttachment({ attachmentId: "../etc" }))).toMatchObject({ code: Code.InvalidArgument });
  });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
