/**
 * Groups end to end over the real stack (nats-server + server + Messengers): a 3-person group
 * with multi-device members, admin-only changes (a non-admin's forged change is rejected by
 * every member), removal with rotation (the removed member cannot decrypt later messages, even
 * handed the ciphertext), leaving, device revocation, new members, out-of-order and lost
 * group messages, group receipts.
 */
import { create } from "@bufbuild/protobuf";
import type { SendRequest } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { GroupControlSchema } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { describe, expect, it } from "vitest";
import { useMessengerHarness } from "./support/messenger-harness.js";
import { fromHex } from "../src/crypto/bytes.js";
import { NoSessionError } from "../src/crypto/errors.js";
import type { GroupEvent } from "../src/groups/group-events.js";
import { MessengerGroups } from "../src/groups/messenger-groups.js";
import { runGroupCommand } from "../src/cli/group-commands.js";
import { applyGroupChange, decodeSignedGroupState, parseSignedGroupState, signGroupState } from "../src/protocol/group-state.js";
import { createMemoryGroupStores } from "../src/store/group-memory-store.js";
import { createFileGroupStores } from "../src/store/group-file-store.js";
import { encodeSenderKeySharedBody } from "../src/protocol/wire.js";
import { Messenger } from "../src/messenger/messenger.js";
import type { GroupStores } from "../src/store/group-interfaces.js";
import { EventLog, createDevice, linkDevice, testBackoff, texts, uniqueId, type TestDevice } from "./messenger-helpers.js";

const server = useMessengerHarness();

interface GroupDevice extends TestDevice {
  groups: MessengerGroups;
  groupEvents: GroupEvent[];
  /** Every group body this device sent (what a hostile server holds). */
  sent: SendRequest[];
  waitGroup(pred: (e: GroupEvent) => boolean, timeoutMs?: number): Promise<GroupEvent>;
}

function withGroups(d: TestDevice, stores: GroupStores = createMemoryGroupStores()): GroupDevice {
  const groups = MessengerGroups.attach(d.m, stores);
  const groupEvents: GroupEvent[] = [];
  const waiters: { pred: (e: GroupEvent) => boolean; resolve: (e: GroupEvent) => void }[] = [];
  groups.on((e) => {
    groupEvents.push(e);
    for (const w of [...waiters]) if (w.pred(e)) waiters.splice(waiters.indexOf(w), 1), w.resolve(e);
  });
  const sent: SendRequest[] = [];
  // Every Send goes through the API's delivery channel (a Session stream, or unary Send).
  const channel = d.m.api.channel;
  const original = channel.send.bind(channel);
  channel.send = (async (req: SendRequest) => {
    if (req.entries.every((e) => e.entry.length === 0)) sent.push(req);
    return original(req);
  }) as typeof channel.send;
  d.m.start();
  return {
    ...d,
    groups,
    groupEvents,
    sent,
    waitGroup(pred, timeoutMs = 20_000) {
      const found = groupEvents.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("timed out waiting for a group event")), timeoutMs);
        waiters.push({ pred, resolve: (e) => (clearTimeout(t), resolve(e)) });
      });
    },
  };
}

/** alice (phone + laptop, admin), bob (phone + laptop), carol (phone), one group, everyone joined. */
async function threePeople() {
  const alice = withGroups(await createDevice(server.url, uniqueId("alice")));
  const bob = withGroups(await createDevice(server.url, uniqueId("bob")));
  const carol = withGroups(await createDevice(server.url, uniqueId("carol")));
  const aliceLaptop = withGroups(await linkDevice(alice.m, server.url));
  const bobLaptop = withGroups(await linkDevice(bob.m, server.url));
  const all = [alice, aliceLaptop, bob, bobLaptop, carol];
  const g = await alice.groups.createGroup("trip", [bob.m.accountId, carol.m.accountId]);
  for (const d of all.slice(1)) await d.waitGroup((e) => e.type === "group-updated" && e.groupId === g.groupId);
  return { alice, aliceLaptop, bob, bobLaptop, carol, all, g: g.groupId };
}

async function waitText(d: GroupDevice, text: string) {
  return d.log.wait("message", (e) => texts([e.message]).includes(text));
}

async function closeAll(devices: GroupDevice[]) {
  for (const d of devices) await d.m.close();
}

describe("groups end to end", () => {
  it("a 3-person group with multi-device members: one Send reaches every other device; receipts come back", async () => {
    const { alice, aliceLaptop, bob, bobLaptop, carol, all, g } = await threePeople();
    const sent = await alice.groups.sendText(g, "hello group");
    expect(alice.sent.at(-1)!.entries).toHaveLength(4); // one Send, empty entries, 4 other devices
    for (const d of [aliceLaptop, bob, bobLaptop, carol]) {
      const e = await waitText(d, "hello group");
      expect(e.message.conversation).toBe(`group:${g}`);
      expect(e.message.sender).toEqual(alice.m.address);
    }
    expect((await waitText(aliceLaptop, "hello group")).message.outgoing).toBe(true);
    await bobLaptop.groups.sendText(g, "hi from bob's laptop");
    for (const d of [alice, aliceLaptop, bob, carol]) await waitText(d, "hi from bob's laptop");
    // Delivery receipts from bob's and carol's devices reach alice; read receipts after markRead.
    for (const from of [bob, bobLaptop, carol]) {
      await alice.log.wait(
        "receipt",
        (e) =>
          e.receipt === "delivered" && e.from.deviceId === from.m.address.deviceId && e.from.accountId === from.m.accountId && e.messageIds.includes(sent.id),
      );
    }
    expect(await carol.groups.markRead(g)).toBe(2);
    await alice.log.wait("receipt", (e) => e.receipt === "read" && e.from.accountId === carol.m.accountId && e.messageIds.includes(sent.id));
    expect((await alice.groups.history(g)).find((m) => m.id === sent.id)?.status).toBe("read");
    for (const d of all) expect(texts(await d.groups.history(g))).toEqual(["hello group", "hi from bob's laptop"]);
    // A file: uploaded once, its key sent once under the sender key.
    const photo = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
    await carol.groups.sendFile(g, photo, { contentType: "image/png", fileName: "p.png" });
    const got = await bobLaptop.log.wait("message", (e) => e.message.body.kind === "attachment");
    if (got.message.body.kind !== "attachment") throw new Error("unreachable");
    expect(await bobLaptop.m.downloadAttachment(got.message.body.attachment)).toEqual(photo);
    await closeAll(all);
  });

  it("group outbox: a message written offline is queued durably and sent when back online", async () => {
    const { alice, bob, carol, all, g } = await threePeople();
    await alice.groups.sendText(g, "online first"); // keys distributed
    await alice.m.stop();
    const queued = await alice.groups.sendText(g, "written offline");
    expect(queued.status).toBe("queued");
    expect((await bob.groups.history(g)).map((m) => m.id)).not.toContain(queued.id);
    alice.m.start();
    await alice.groups.flush();
    await waitText(bob, "written offline");
    await waitText(carol, "written offline");
    expect((await alice.groups.history(g)).find((m) => m.id === queued.id)?.status).not.toBe("queued");
    await alice.log.wait("sent", (e) => e.messageId === queued.id);
    await closeAll(all);
  });

  it("group outbox on file stores: a queued message survives an app restart", async () => {
    const aliceDev = await createDevice(server.url, uniqueId("alice"), { file: true });
    const groupDir = `${aliceDev.dir}/groups`;
    const alice = withGroups(aliceDev, createFileGroupStores(groupDir, { fsync: false }));
    const bob = withGroups(await createDevice(server.url, uniqueId("bob")));
    const g = (await alice.groups.createGroup("durable", [bob.m.accountId])).groupId;
    await alice.groups.sendText(g, "before restart");
    await waitText(bob, "before restart");
    await alice.m.stop();
    const queued = await alice.groups.sendText(g, "queued across a restart");
    expect(queued.status).toBe("queued");
    await alice.m.close();
    // The app starts again from its stores.
    const m = await Messenger.open({ serverUrl: server.url, backoff: testBackoff, ...aliceDev.stores });
    const again = withGroups({ m, log: new EventLog(m), stores: aliceDev.stores, dir: aliceDev.dir }, createFileGroupStores(groupDir, { fsync: false }));
    await again.groups.flush();
    await waitText(bob, "queued across a restart");
    expect((await again.groups.history(g)).find((x) => x.id === queued.id)?.status).not.toBe("queued");
    await closeAll([again, bob]);
  });

  it("file stores: a crafted group body (200-byte distribution_id) is dropped and acknowledged, not redelivered forever", async () => {
    const alice = withGroups(await createDevice(server.url, uniqueId("alice")));
    const bobDev = await createDevice(server.url, uniqueId("bob"), { file: true });
    const bob = withGroups(bobDev, createFileGroupStores(`${bobDev.dir}/groups`, { fsync: false }));
    const g = await alice.groups.createGroup("trip", [bob.m.accountId]);
    await bob.waitGroup((e) => e.type === "group-updated" && e.groupId === g.groupId);
    const p = alice.m.provider;
    const crafted = encodeSenderKeySharedBody(p.random(200), 1, 0, p.random(64), p.random(64));
    const known = await alice.m.directory.known(bob.m.accountId);
    const res = await alice.m.api.delivery.send({
      messageId: p.random(16),
      sharedBody: crafted,
      entries: [{ device: bob.m.address, entry: new Uint8Array(0) }],
      versions: known ? [{ accountId: bob.m.accountId, deviceListVersion: known.version }] : [],
    });
    expect(res.outcome.case).toBe("stored");
    await bob.log.wait("session-problem", (e) => e.problem === "undecryptable" && /distribution_id/.test(e.detail));
    await alice.groups.sendText(g.groupId, "after the crafted one");
    await waitText(bob, "after the crafted one");
    await closeAll([alice, bob]);
  });

  it("admin-only: a non-admin's forged change is rejected by every member device", async () => {
    const { alice, aliceLaptop, bob, bobLaptop, carol, all, g } = await threePeople();
    await expect(bob.groups.addMembers(g, [carol.m.accountId])).rejects.toMatchObject({ code: "not_admin" });
    // Bob's client signs version 2 itself (adding mallory, promoting himself) and sends it to everyone.
    const info = await bob.groups.info(g);
    expect(info?.version).toBe(1);
    const stored = await (
      bob.groups.manager as unknown as { stores: { groups: { load(id: string): Promise<{ signedState: Uint8Array }> } } }
    ).stores.groups.load(g);
    const v1signed = decodeSignedGroupState(stored.signedState);
    const v1 = { signed: v1signed, state: parseSignedGroupState(v1signed), hash: bob.m.provider.sha256(v1signed.state) };
    const seed = (await bob.m.protocol.identity.getLocalIdentity())!.signingSeed;
    const forged = await signGroupState(bob.m.provider, applyGroupChange(v1, { promote: [bob.m.accountId], add: ["mallory-x"] }), bob.m.address, seed);
    const content = create(ContentSchema, {
      conversation: { kind: { case: "groupId", value: fromHex(g) } },
      body: { case: "groupControl", value: create(GroupControlSchema, { kind: { case: "update", value: forged } }) },
    });
    await bob.m.sendContent(content, [alice.m.accountId, carol.m.accountId], "forged");
    for (const d of [alice, aliceLaptop, bobLaptop, carol]) {
      const e = await d.waitGroup((x) => x.type === "group-rejected" && x.what === "state");
      expect(e).toMatchObject({ problem: "not-admin", from: bob.m.address });
      expect((await d.groups.info(g))?.version).toBe(1);
    }
    // An admin's change goes through everywhere.
    await alice.groups.promote(g, bob.m.accountId);
    for (const d of all) await d.waitGroup((e) => e.type === "group-updated" && e.version === 2);
    await closeAll(all);
  });

  it("a removed member cannot decrypt anything sent after removal; the others keep talking", async () => {
    const { alice, aliceLaptop, bob, bobLaptop, carol, all, g } = await threePeople();
    await alice.groups.sendText(g, "before removal");
    await bob.groups.sendText(g, "bob before removal");
    await waitText(carol, "before removal");
    await waitText(carol, "bob before removal");
    await alice.groups.removeMember(g, carol.m.accountId);
    await carol.waitGroup((e) => e.type === "group-left");
    for (const d of [aliceLaptop, bob, bobLaptop]) await d.waitGroup((e) => e.type === "group-updated" && e.version === 2);

    await alice.groups.sendText(g, "after removal");
    await bob.groups.sendText(g, "bob after removal");
    for (const d of [aliceLaptop, bob, bobLaptop]) await waitText(d, "after removal");
    for (const d of [alice, aliceLaptop, bobLaptop]) await waitText(d, "bob after removal");
    // Not addressed to carol...
    expect(alice.sent.at(-1)!.entries.map((e) => e.device!.accountId)).not.toContain(carol.m.accountId);
    // ...and a hostile server handing her the ciphertext gets her nothing: new sender keys.
    for (const [who, req] of [
      [alice, alice.sent.at(-1)!],
      [bob, bob.sent.at(-1)!],
    ] as const) {
      await expect(carol.groups.manager.cipher.decrypt(who.m.address, req.sharedBody)).rejects.toBeInstanceOf(NoSessionError);
      await carol.groups.manager.handleGroupBody(who.m.address, req.messageId, req.sharedBody, 0);
    }
    expect(texts(await carol.groups.history(g))).toEqual(["before removal", "bob before removal"]);
    await expect(carol.groups.sendText(g, "still here?")).rejects.toMatchObject({ code: "inactive" });
    await closeAll(all);
  });

  it("leaving, a revoked device and a new member: rotation on the way out, no history on the way in", async () => {
    const { alice, aliceLaptop, bob, bobLaptop, carol, all, g } = await threePeople();
    await alice.groups.sendText(g, "one");
    await waitText(bobLaptop, "one");
    // Bob revokes his laptop: the next group message is under a new key it does not have.
    await bob.m.revokeDevice(bobLaptop.m.address.deviceId);
    // Alice's cached list still has the laptop: the server answers MismatchedDevices (stale),
    // alice refreshes, sees the revocation and rotates before sending again.
    await alice.groups.sendText(g, "two");
    const laptop = `${bob.m.accountId}.${bobLaptop.m.address.deviceId}`;
    const addressed = (r: SendRequest) => r.entries.map((e) => `${e.device!.accountId}.${e.device!.deviceId}`);
    expect(addressed(alice.sent.at(-2)!)).toContain(laptop); // the attempt the server refused
    expect(addressed(alice.sent.at(-1)!)).not.toContain(laptop);
    await waitText(bob, "two");
    await expect(bobLaptop.groups.manager.cipher.decrypt(alice.m.address, alice.sent.at(-1)!.sharedBody)).rejects.toBeInstanceOf(NoSessionError);

    // Carol leaves: GroupLeave, alice (admin) publishes the removal.
    await carol.groups.leave(g);
    for (const d of [alice, aliceLaptop, bob]) await d.waitGroup((e) => e.type === "group-updated" && e.diff.removed.includes(carol.m.accountId));
    await bob.groups.sendText(g, "after carol left");
    await waitText(alice, "after carol left");
    await expect(carol.groups.manager.cipher.decrypt(bob.m.address, bob.sent.at(-1)!.sharedBody)).rejects.toBeInstanceOf(NoSessionError);

    // Dave joins: he reads what comes after, not what came before.
    const dave = withGroups(await createDevice(server.url, uniqueId("dave")));
    await alice.groups.addMembers(g, [dave.m.accountId]);
    await dave.waitGroup((e) => e.type === "group-updated" && e.joined);
    await alice.groups.sendText(g, "welcome dave");
    await waitText(dave, "welcome dave");
    const early = alice.sent.slice(0, -1);
    for (const req of early) await expect(dave.groups.manager.cipher.decrypt(alice.m.address, req.sharedBody)).rejects.toThrow();
    expect(texts(await dave.groups.history(g))).toEqual(["welcome dave"]);
    await closeAll([...all, dave]);
  });

  it("out-of-order and lost group messages within limits still decrypt", async () => {
    const { alice, bob, all, g } = await threePeople();
    // Hold alice's group Sends back, then let the "network" deliver them reversed, losing some.
    const channel = alice.m.api.channel;
    const send = channel.send;
    const held: SendRequest[] = [];
    channel.send = (async (req: SendRequest) => {
      // Pairwise sends (state, sender keys) go through; group bodies (empty entries) are held.
      if (req.entries.every((e) => e.entry.length === 0)) {
        held.push(req);
        return { outcome: { case: "stored", value: { entries: [], serverTimestampMs: 0n, duplicate: false } } };
      }
      return send.call(channel, req);
    }) as typeof channel.send;
    for (let i = 0; i < 25; i++) await alice.groups.sendText(g, `m${i}`);
    expect(held).toHaveLength(25);
    channel.send = send;
    const lost = new Set([2, 9, 10, 17]);
    const order = held
      .map((r, i) => ({ r, i }))
      .filter((x) => !lost.has(x.i))
      .reverse();
    for (const { r } of order) await send.call(channel, r);
    const expected = [...Array(25).keys()].filter((i) => !lost.has(i)).map((i) => `m${i}`);
    for (const t of expected) await waitText(bob, t);
    expect(new Set(texts(await bob.groups.history(g)))).toEqual(new Set(expected));
    expect(bob.log.of("session-problem")).toEqual([]);
    await closeAll(all);
  });

  it("CLI: group create/add/promote/demote/settings/send/history/read/remove/leave", async () => {
    const alice = withGroups(await createDevice(server.url, uniqueId("alice")));
    const bob = withGroups(await createDevice(server.url, uniqueId("bob")));
    const carol = withGroups(await createDevice(server.url, uniqueId("carol")));
    const run = async (d: GroupDevice, ...argv: string[]) => {
      const lines: string[] = [];
      const code = await runGroupCommand(argv, { groups: d.groups, out: (l) => lines.push(l) });
      return { code, text: lines.join("\n") };
    };
    const created = await run(alice, "create", "cli trip", bob.m.accountId);
    expect(created.code).toBe(0);
    const id = created.text.split(" ")[0];
    const short = id.slice(0, 8);
    await bob.waitGroup((e) => e.type === "group-updated" && e.groupId === id);
    expect((await run(alice, "add", short, carol.m.accountId)).code).toBe(0);
    await carol.waitGroup((e) => e.type === "group-updated" && e.groupId === id);
    expect((await run(bob, "add", short, "someone-else")).code).toBe(1); // not an admin
    expect((await run(alice, "promote", short, bob.m.accountId)).text).toContain(`${bob.m.accountId}*`);
    await bob.waitGroup((e) => e.type === "group-updated" && e.version === 3);
    expect((await run(bob, "settings", short, "--title", "renamed")).text).toContain('"renamed"');
    await alice.waitGroup((e) => e.type === "group-updated" && e.version === 4);
    expect((await run(bob, "demote", short, alice.m.accountId)).code).toBe(0);
    expect((await run(alice, "send", short, "hello", "from", "the", "cli")).code).toBe(0);
    await waitText(carol, "hello from the cli");
    expect((await run(carol, "history", short)).text).toContain(`${alice.m.accountId}/1: hello from the cli`);
    expect((await run(carol, "read", short)).text).toBe("marked 1 message(s) read");
    expect((await run(carol, "list")).text).toContain('"renamed"');
    expect((await run(bob, "remove", short, carol.m.accountId)).code).toBe(0);
    await carol.waitGroup((e) => e.type === "group-left");
    expect((await run(carol, "info", short)).text).toContain("(left)");
    expect((await run(alice, "leave", short)).text).toBe(`left ${id}`);
    expect((await run(alice, "frobnicate")).code).toBe(2);
    await closeAll([alice, bob, carol]);
  });
});
