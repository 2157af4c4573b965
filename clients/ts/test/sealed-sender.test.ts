/**
 * Sealed sender end to end: real Messengers on a real server. After one message each way,
 * 1:1 mail, receipts and typing go with SendSealed; the recipient learns the sender from inside; the
 * sender's own devices still get their copies; nothing JetStream stores for the sealed mail
 * and nothing the server logs names the sender. A refused key falls back to Send, visibly;
 * forged sealed mail is dropped and reported without disturbing what follows.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { SenderCertificateSchema } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { createLogger, type RunningServer } from "@sealpost/server";
import { plainTransport, startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import { fromHex } from "../src/crypto/bytes.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { newSealingKey, sealEntry } from "../src/protocol/sealed-entry.js";
import { createDevice, linkDevice, removeTempDirs, texts, uniqueId, type TestDevice } from "./messenger-helpers.js";

let nats: TestNats;
let server: RunningServer;
const logLines: string[] = [];

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url, {}, { log: createLogger("debug", (line) => logLines.push(line)) });
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
  await removeTempDirs();
});

async function started(...devices: TestDevice[]) {
  for (const d of devices) d.m.start();
  await expect.poll(() => devices.every((d) => d.m.sealedAccess().registered), { timeout: 10_000 }).toBe(true);
}

/**
 * Every message JetStream holds in the streams that carry mail (mailboxes, bodies) and the
 * outcome records of sealed Sends, as raw bytes (subject, data, headers). The outcome records
 * of authenticated Sends are left out: they name their sender's recipients by design (Bob's
 * first, unsealed message to Alice is one).
 */
async function storedMail(): Promise<Buffer[]> {
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    const out: Buffer[] = [];
    for await (const si of jsm.streams.list()) {
      const name = si.config.name;
      if (!/^SP_MAILBOX_|^SP_BODIES$|^KV_sp_sends$/.test(name)) continue;
      for (let seq = si.state.first_seq; seq <= si.state.last_seq && si.state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(name, { seq }).catch(() => null);
        if (m && !(name === "KV_sp_sends" && !m.subject.startsWith("$KV.sp_sends._sealed.")))
          out.push(Buffer.concat([Buffer.from(m.subject), Buffer.from(m.data), Buffer.from(m.header?.toString() ?? "")]));
      }
    }
    return out;
  } finally {
    await nc.close();
  }
}

describe("sealed sender", () => {
  it("after one message each way, mail and receipts go sealed; JetStream and the logs never name the sender", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    const carol = await createDevice(server.url, uniqueId("carol"));
    await started(alice, bob, carol);

    // Alice has no key of Bob's yet: his first message to her carries it (Send, not sealed).
    await bob.m.sendText(alice.m.accountId, "hi alice");
    expect((await bob.log.wait("sent", (e) => e.label === "text")).sealed).toBe(false);
    await alice.log.wait("message", (e) => texts([e.message]).includes("hi alice"));

    // Bob goes offline: Alice's sealed mail stays in his mailbox, where we look at it.
    await bob.m.stop();
    const logsBefore = logLines.length;
    const sent: { id: string }[] = [];
    for (const t of ["one", "two", "three"]) sent.push(await alice.m.sendText(bob.m.accountId, t));
    for (const s of sent) expect((await alice.log.wait("sent", (e) => e.messageId === s.id)).sealed).toBe(true);
    // The control: Carol (no key of Bob's) sends with Send, so her account id is in his mailbox.
    await carol.m.sendText(bob.m.accountId, "from carol");
    await carol.log.wait("sent", (e) => e.label === "text");

    const records = await storedMail();
    const holds = (needle: string | Uint8Array) => records.some((r) => r.includes(Buffer.from(needle)));
    expect(holds(carol.m.accountId)).toBe(true);
    expect(holds(alice.m.accountId)).toBe(false);
    const aliceKeys = await alice.stores.protocol.identity.getLocalIdentity();
    expect(holds(aliceKeys!.signingKey) || holds(aliceKeys!.dhKey)).toBe(false);
    const sealedLogs = logLines.slice(logsBefore);
    expect(sealedLogs.some((l) => l.includes("SendSealed"))).toBe(true);
    expect(sealedLogs.filter((l) => l.includes(alice.m.accountId))).toEqual([]);

    // Bob back: everything from Alice, in order, from her (the sender came from inside).
    bob.m.start();
    for (const t of ["one", "two", "three"]) {
      const e = await bob.log.wait("message", (x) => texts([x.message]).includes(t));
      expect(e.message.sender).toEqual(alice.m.address);
      expect(e.message.sealed).toBe(true);
    }
    // Both histories say which messages went sealed: not the first, unsealed one.
    expect((await alice.m.history(bob.m.accountId)).map((m) => [texts([m])[0], !!m.sealed])).toEqual([
      ["hi alice", false],
      ["one", true],
      ["two", true],
      ["three", true],
    ]);
    expect(texts(await bob.m.history(alice.m.accountId))).toEqual(["hi alice", "one", "two", "three"]);
    // Bob learned Alice's key from her mail: his receipts to her go sealed too.
    const receipt = await bob.log.wait("sent", (e) => e.label === "delivery-receipt");
    expect(receipt.sealed).toBe(true);
    await alice.log.wait("receipt", (e) => e.receipt === "delivered" && e.messageIds.includes(sent[2].id));
    // Typing too: one more SendSealed reaches the server, and Bob sees Alice typing.
    const sealedCalls = () => logLines.filter((l) => l.includes('"procedure":"SendSealed"')).length;
    await Promise.all([alice.m.flush(), bob.m.flush()]); // every receipt out: nothing else is sent now
    const before = sealedCalls();
    expect(await alice.m.setTyping(bob.m.accountId, true)).toBe(true);
    expect((await bob.log.wait("typing", (e) => e.started)).from).toEqual(alice.m.address);
    expect(sealedCalls()).toBe(before + 1);
    for (const d of [alice, bob, carol]) await d.m.close();
  });

  it("a 1:1 text near the entry limit still goes sealed and arrives (an inline entry leaves room for the seal)", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    await started(alice, bob);
    await bob.m.sendText(alice.m.accountId, "hi alice");
    await alice.log.wait("message", (e) => texts([e.message]).includes("hi alice"));
    // Padded, these land on each side of the largest envelope that still carries its content.
    for (const size of [3300, 3450, 3600, 3750, 3900]) {
      const text = `${size} `.padEnd(size, "x");
      const s = await alice.m.sendText(bob.m.accountId, text);
      expect((await alice.log.wait("sent", (e) => e.messageId === s.id)).sealed).toBe(true);
      const e = await bob.log.wait("message", (x) => texts([x.message]).includes(text));
      expect(e.message.sealed).toBe(true);
    }
    for (const d of [alice, bob]) await d.m.close();
  });

  it("the sender's other devices get their copies (with Send), the recipient's every device its sealed one", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const alice2 = await linkDevice(alice.m, server.url, { name: "tablet" });
    const bob = await createDevice(server.url, uniqueId("bob"));
    const bob2 = await linkDevice(bob.m, server.url);
    await started(alice, alice2, bob, bob2);
    await bob.m.sendText(alice.m.accountId, "hi");
    await alice.log.wait("message", (e) => texts([e.message]).includes("hi"));
    await alice2.log.wait("message", (e) => texts([e.message]).includes("hi"));

    const s = await alice.m.sendText(bob.m.accountId, "to both of you");
    const ev = await alice.log.wait("sent", (e) => e.messageId === s.id);
    expect(ev).toMatchObject({ sealed: true, devices: 3 });
    for (const d of [bob, bob2]) expect((await d.log.wait("message", (e) => e.message.id === s.id)).message.sender).toEqual(alice.m.address);
    expect((await alice2.log.wait("message", (e) => e.message.id === s.id)).message).toMatchObject({ outgoing: true });
    for (const d of [alice, alice2, bob, bob2]) await d.m.close();
  });

  it("falls back to Send, visibly, when the recipient stops taking sealed mail; the message still arrives", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    await started(alice, bob);
    await bob.m.sendText(alice.m.accountId, "hi");
    await alice.log.wait("message", (e) => texts([e.message]).includes("hi"));
    // Alice's delivery receipt for it goes sealed (she has Bob's key now); then Bob turns sealed mail off.
    expect((await alice.log.wait("sent", (e) => e.label === "delivery-receipt")).sealed).toBe(true);
    await bob.m.setSealedAccess("off");
    expect(bob.m.sealedAccess()).toEqual({ mode: "off", registered: true });

    const first = await alice.m.sendText(bob.m.accountId, "are you there?");
    const fallback = await alice.log.wait("sealed-fallback", (e) => e.messageId === first.id);
    expect(fallback).toMatchObject({ accountId: bob.m.accountId, label: "text" });
    expect(fallback.reason).toMatch(/^sealed send refused/);
    expect((await alice.log.wait("sent", (e) => e.messageId === first.id)).sealed).toBe(false);
    await bob.log.wait("message", (e) => e.message.id === first.id);
    // The refused key is forgotten: the next one goes with Send at once.
    const second = await alice.m.sendText(bob.m.accountId, "ok");
    expect((await alice.log.wait("sent", (e) => e.messageId === second.id)).sealed).toBe(false);
    expect(alice.log.of("sealed-fallback")).toHaveLength(1);
    for (const d of [alice, bob]) await d.m.close();
  });

  it("a rotated key stops a contact's sealed mail (it falls back, visibly) until the rotating device writes again", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    await started(alice, bob);
    await bob.m.sendText(alice.m.accountId, "hi");
    await alice.log.wait("message", (e) => texts([e.message]).includes("hi"));
    expect((await alice.log.wait("sent", (e) => e.label === "delivery-receipt")).sealed).toBe(true);

    await bob.m.rotateAccessKey();
    expect(bob.m.sealedAccess()).toEqual({ mode: "contacts", registered: true });
    const refused = await alice.m.sendText(bob.m.accountId, "with the old key");
    await alice.log.wait("sealed-fallback", (e) => e.messageId === refused.id);
    expect((await alice.log.wait("sent", (e) => e.messageId === refused.id)).sealed).toBe(false);
    await bob.log.wait("message", (e) => e.message.id === refused.id);

    // Bob writes again: his content carries the new key, and Alice's mail is sealed once more.
    await bob.m.sendText(alice.m.accountId, "here is my new key");
    await alice.log.wait("message", (e) => texts([e.message]).includes("here is my new key"));
    const again = await alice.m.sendText(bob.m.accountId, "sealed again");
    expect((await alice.log.wait("sent", (e) => e.messageId === again.id)).sealed).toBe(true);
    for (const d of [alice, bob]) await d.m.close();
  });

  it("drops sealed mail with a forged certificate, says so, and takes the next message", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    await started(alice, bob);
    const key = fromHex((await bob.stores.store.getAccount())!.sealedAccess!.accessKey);
    const bobIdentity = (await bob.stores.protocol.identity.getLocalIdentity())!;
    const p = createNodeProvider();
    const forged = create(SenderCertificateSchema, { body: new Uint8Array([10, 5, 0x61, 0x6c, 0x69, 0x63, 0x65]), signature: new Uint8Array(64) });
    const entry = await sealEntry(p, await newSealingKey(p), bobIdentity.dhKey, forged, new Uint8Array([18, 1, 0]));
    const anonymous = createClient(DeliveryService, plainTransport(server.url));
    await anonymous.sendSealed({
      accountId: bob.m.accountId,
      accessKey: key,
      send: { messageId: p.random(16), sharedBody: new Uint8Array(8), entries: [{ device: bob.m.address, entry }] },
    });
    const problem = await bob.log.wait("receive-problem", (e) => e.problem === "sealed-sender");
    expect(problem.detail).toMatch(/^sealed mail dropped: /);
    expect(problem.from).toBeUndefined();
    await alice.m.sendText(bob.m.accountId, "still fine");
    await bob.log.wait("message", (e) => texts([e.message]).includes("still fine"));
    for (const d of [alice, bob]) await d.m.close();
  });
});
