import { create } from "@bufbuild/protobuf";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { GroupControlSchema } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { describe, expect, it } from "vitest";
import { fromHex } from "../src/crypto/bytes.js";
import { NoSessionError } from "../src/crypto/errors.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { GroupError } from "../src/groups/group-errors.js";
import { applyGroupChange, decodeSignedGroupState, parseSignedGroupState, signGroupState } from "../src/protocol/group-state.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { createFileGroupStores } from "../src/store/group-file-store.js";
import { FakeNetwork, type FakeDevice, type Mail } from "./groups-network.js";

/** alice (2 devices, admin), bob (2 devices), carol (1 device), all settled into one group. */
async function threePeople() {
  const net = new FakeNetwork(createNodeProvider());
  const a1 = await net.add("alice", 1);
  const a2 = await net.add("alice", 2);
  const b1 = await net.add("bob", 1);
  const b2 = await net.add("bob", 2);
  const c1 = await net.add("carol", 1);
  const g = await a1.manager.createGroup("trip", ["bob", "carol"]);
  await net.settle();
  return { net, a1, a2, b1, b2, c1, g: g.groupId, all: [a1, a2, b1, b2, c1] };
}

async function currentState(d: FakeDevice, groupId: string) {
  return d.manager.info(groupId);
}

describe("GroupManager over an in-memory network", () => {
  it("a 3-person group with multi-device members: every other device gets each message, once", async () => {
    const { net, a1, a2, b1, b2, c1, g, all } = await threePeople();
    for (const d of all) expect((await currentState(d, g))?.version).toBe(1);
    await a1.manager.sendText(g, "hello from alice.1");
    await b2.manager.sendText(g, "hello from bob.2");
    await c1.manager.sendText(g, "hello from carol");
    await net.settle();
    expect(a1.texts(g)).toEqual(["hello from bob.2", "hello from carol"]);
    expect(a2.texts(g)).toEqual(["hello from alice.1", "hello from bob.2", "hello from carol"]);
    expect(b1.texts(g)).toEqual(["hello from alice.1", "hello from bob.2", "hello from carol"]);
    expect(b2.texts(g)).toEqual(["hello from alice.1", "hello from carol"]);
    expect(c1.texts(g)).toEqual(["hello from alice.1", "hello from bob.2"]);
    for (const d of all) expect(d.errors).toEqual([]);
    // Steady state: one Send per message, no more distributions.
    const before = net.pairwiseSends;
    await a1.manager.sendText(g, "again");
    expect(net.pairwiseSends).toBe(before);
  });

  it("admin-only: a non-admin's forged change is rejected by every member; its API refuses", async () => {
    const { net, b1, g, all } = await threePeople();
    await expect(b1.manager.addMembers(g, ["mallory"])).rejects.toMatchObject({ code: "not_admin" });
    // Bob crafts and signs version 2 himself and sends it to everyone.
    const record = await b1.manager.info(g);
    expect(record?.version).toBe(1);
    const v1Signed = (await (b1.manager as unknown as { stores: { groups: { load(id: string): Promise<{ signedState: Uint8Array }> } } }).stores.groups.load(g))
      .signedState;
    const signed1 = decodeSignedGroupState(v1Signed);
    const p = createNodeProvider();
    const v1 = { signed: signed1, state: parseSignedGroupState(signed1), hash: p.sha256(signed1.state) };
    for (const change of [{ add: ["mallory"] }, { promote: ["bob"] }, { remove: ["alice"], promote: ["bob"] }, { title: "pwned" }]) {
      const forged = await signGroupState(p, applyGroupChange(v1, change), b1.self, b1.identity.signingSeed);
      const content = create(ContentSchema, {
        conversation: { kind: { case: "groupId", value: fromHex(g) } },
        body: { case: "groupControl", value: create(GroupControlSchema, { kind: { case: "update", value: forged } }) },
      });
      await b1.sendPairwise(content, ["alice", "carol"]);
    }
    await net.settle();
    for (const d of all) {
      expect((await currentState(d, g))?.version).toBe(1);
      if (d !== b1) expect(d.events.filter((e) => e.type === "group-rejected" && e.problem === "not-admin")).toHaveLength(4);
    }
  });

  it("the current state arriving again is ignored quietly; an older version is reported stale", async () => {
    const { net, a1, b1, c1, g } = await threePeople();
    const load = async () =>
      decodeSignedGroupState(
        (await (a1.manager as unknown as { stores: { groups: { load(id: string): Promise<{ signedState: Uint8Array }> } } }).stores.groups.load(g)).signedState,
      );
    const v1 = await load();
    await a1.manager.changeSettings(g, { title: "trip v2" });
    await net.settle();
    const v2 = await load();
    const send = (signed: typeof v1) =>
      a1.sendPairwise(
        create(ContentSchema, {
          conversation: { kind: { case: "groupId", value: fromHex(g) } },
          body: { case: "groupControl", value: create(GroupControlSchema, { kind: { case: "update", value: signed } }) },
        }),
        ["bob", "carol"],
      );
    const rejected = (d: FakeDevice) => d.events.filter((e) => e.type === "group-rejected");
    await send(v2);
    await net.settle();
    for (const d of [b1, c1]) {
      expect((await currentState(d, g))?.version).toBe(2);
      expect(rejected(d)).toEqual([]);
    }
    await send(v1);
    await net.settle();
    for (const d of [b1, c1]) expect(rejected(d).map((e) => (e as { problem: string }).problem)).toEqual(["stale"]);
  });

  it("a removed member cannot decrypt anything sent after removal (even handed the ciphertext, even ignoring the removal)", async () => {
    const { net, a1, b1, c1, g } = await threePeople();
    await a1.manager.sendText(g, "before");
    await b1.manager.sendText(g, "before from bob");
    await net.settle();
    expect(c1.texts(g)).toEqual(["before", "before from bob"]);
    await a1.manager.removeMember(g, "carol");
    // Carol's client ignores the removal (drops it), keeping every key it had.
    c1.inbox.length = 0;
    await net.settle();
    expect((await b1.manager.info(g))?.members.map((m) => m.accountId)).toEqual(["alice", "bob"]);
    await a1.manager.sendText(g, "after from alice");
    await b1.manager.sendText(g, "after from bob");
    await net.settle();
    expect(b1.texts(g)).toContain("after from alice");
    // A hostile server hands carol every body sent after the removal.
    const after = [...a1.sentBodies.slice(-1), ...b1.sentBodies.slice(-1)];
    for (const m of after) await c1.process(m);
    expect(c1.texts(g)).toEqual(["before", "before from bob"]);
    for (const m of after) {
      if (m.kind !== "group") continue;
      await expect(c1.manager.cipher.decrypt(m.from, m.body)).rejects.toBeInstanceOf(NoSessionError);
    }
  });

  it("leaving: the member sends GroupLeave, an admin publishes the removal, senders rotate", async () => {
    const { net, a1, a2, b1, b2, c1, g } = await threePeople();
    await c1.manager.sendText(g, "carol before");
    await net.settle();
    await b2.manager.leave(g);
    await net.settle();
    for (const d of [a1, a2, c1]) expect((await d.manager.info(g))?.members.map((m) => m.accountId)).toEqual(["alice", "carol"]);
    for (const d of [b1, b2]) expect((await d.manager.info(g))?.active).toBe(false);
    await c1.manager.sendText(g, "carol after");
    await net.settle();
    expect(a1.texts(g)).toEqual(["carol before", "carol after"]);
    expect(b1.texts(g)).toEqual(["carol before"]);
    const last = c1.sentBodies.at(-1)!;
    if (last.kind === "group") await expect(b1.manager.cipher.decrypt(last.from, last.body)).rejects.toBeInstanceOf(NoSessionError);
    await expect(b1.manager.sendText(g, "x")).rejects.toMatchObject({ code: "inactive" });
  });

  it("an admin leaving promotes another member when it is the last admin", async () => {
    const { net, a1, b1, g } = await threePeople();
    await a1.manager.leave(g);
    await net.settle();
    const info = await b1.manager.info(g);
    expect(info?.members).toEqual([
      { accountId: "bob", admin: true },
      { accountId: "carol", admin: false },
    ]);
    expect((await a1.manager.info(g))?.active).toBe(false);
  });

  it("revoking one of a member's devices rotates every sender's key", async () => {
    const { net, a1, b2, c1, g } = await threePeople();
    await a1.manager.sendText(g, "one");
    await c1.manager.sendText(g, "one from carol");
    await net.settle();
    net.revoke(b2);
    await a1.manager.sendText(g, "two");
    await c1.manager.sendText(g, "two from carol");
    for (const sender of [a1, c1]) {
      const m = sender.sentBodies.at(-1)!;
      expect(b2.inbox).not.toContain(m);
      if (m.kind === "group") await expect(b2.manager.cipher.decrypt(m.from, m.body)).rejects.toBeInstanceOf(NoSessionError);
    }
  });

  it("a new member cannot read earlier messages, and reads later ones", async () => {
    const { net, a1, b1, g } = await threePeople();
    const d1 = await net.add("dave", 1);
    await a1.manager.sendText(g, "early alice");
    await b1.manager.sendText(g, "early bob");
    await net.settle();
    await a1.manager.addMembers(g, ["dave"]);
    await net.settle();
    for (const m of [...a1.sentBodies, ...b1.sentBodies]) await d1.process(m);
    expect(d1.texts(g)).toEqual([]);
    await a1.manager.sendText(g, "welcome dave");
    await b1.manager.sendText(g, "hi dave");
    await net.settle();
    expect(d1.texts(g)).toEqual(["welcome dave", "hi dave"]);
  });

  it("a member's newly linked device gets the state and the keys at the next send, not the history", async () => {
    const { net, a1, b1, c1, g } = await threePeople();
    await a1.manager.sendText(g, "before the new device");
    await net.settle();
    const b3 = await net.add("bob", 3);
    await a1.manager.sendText(g, "after the new device");
    await c1.manager.sendText(g, "carol too");
    await net.settle();
    expect((await b3.manager.info(g))?.version).toBe(1);
    expect(b3.texts(g)).toEqual(["after the new device", "carol too"]);
    expect(b1.texts(g)).toEqual(["before the new device", "after the new device", "carol too"]);
    // The new device can send too; everyone (its own other device included) reads it.
    await b3.manager.sendText(g, "hello from bob.3");
    await net.settle();
    for (const d of [a1, b1, c1]) expect(d.texts(g)).toContain("hello from bob.3");
  });

  it("out-of-order and lost group messages within limits still decrypt", async () => {
    const { net, a1, b1, g } = await threePeople();
    for (let i = 0; i < 30; i++) await a1.manager.sendText(g, `m${i}`);
    const dropped = new Set([3, 7, 8, 20]);
    await b1.drain((batch: Mail[]) => {
      const groupMail = batch.filter((m) => m.kind === "group");
      const rest = batch.filter((m) => m.kind !== "group");
      const kept = groupMail.filter((_, i) => !dropped.has(i));
      // Reverse every block of 5.
      const shuffled: Mail[] = [];
      for (let i = 0; i < kept.length; i += 5) shuffled.push(...kept.slice(i, i + 5).reverse());
      return [...rest, ...shuffled];
    });
    await net.settle();
    const got = b1.texts(g);
    expect(got).toHaveLength(26);
    expect(new Set(got)).toEqual(new Set([...Array(30).keys()].filter((i) => !dropped.has(i)).map((i) => `m${i}`)));
    expect(b1.errors).toEqual([]);
  });

  it("a group message that arrives before its distribution waits for it", async () => {
    const { net, a1, b1, g } = await threePeople();
    await a1.manager.sendText(g, "first");
    // Bob's inbox: distribution(s) then the body; deliver the body first.
    await b1.drain((batch) => [...batch.filter((m) => m.kind === "group"), ...batch.filter((m) => m.kind !== "group")]);
    await net.settle();
    expect(b1.texts(g)).toEqual(["first"]);
  });

  it("waiting messages survive a restart (persisted queues)", async () => {
    const { net, a1, b1, g } = await threePeople();
    await a1.manager.sendText(g, "early bird");
    // Bob gets the body first and restarts before the sender key arrives.
    const body = b1.inbox.filter((m) => m.kind === "group");
    const rest = b1.inbox.filter((m) => m.kind !== "group");
    b1.inbox.length = 0;
    for (const m of body) await b1.process(m);
    expect(await b1.manager.pendingCount()).toEqual({ messages: 1, distributions: 0, updates: 0 });
    b1.restart(b1.stores);
    expect(await b1.manager.pendingCount()).toEqual({ messages: 1, distributions: 0, updates: 0 });
    for (const m of rest) await b1.process(m);
    await net.settle();
    expect(b1.texts(g)).toEqual(["early bird"]);
    expect(await b1.manager.pendingCount()).toEqual({ messages: 0, distributions: 0, updates: 0 });
  });

  it("promote, demote, settings; admins-only groups refuse members' messages", async () => {
    const { net, a1, b1, c1, g, all } = await threePeople();
    await a1.manager.promote(g, "bob");
    await net.settle();
    await b1.manager.changeSettings(g, { title: "trip 2", adminsOnlyMessages: true });
    await net.settle();
    await b1.manager.demote(g, "alice");
    await net.settle();
    for (const d of all) {
      const info = await d.manager.info(g);
      expect(info?.version).toBe(4);
      expect(info?.title).toBe("trip 2");
      expect(info?.members.filter((m) => m.admin).map((m) => m.accountId)).toEqual(["bob"]);
    }
    await expect(c1.manager.sendText(g, "member speaks")).rejects.toBeInstanceOf(GroupError);
    await expect(a1.manager.addMembers(g, ["x-y-z"])).rejects.toMatchObject({ code: "not_admin" });
    await b1.manager.sendText(g, "admin speaks");
    await net.settle();
    expect(c1.texts(g)).toEqual(["admin speaks"]);
  });

  it("concurrent changes by two admins converge on every device", async () => {
    const { net, a1, b1, g, all } = await threePeople();
    await a1.manager.promote(g, "bob");
    await net.settle();
    await a1.manager.changeSettings(g, { title: "alice's title" });
    await b1.manager.changeSettings(g, { title: "bob's title" });
    await net.settle();
    let infos = await Promise.all(all.map((d) => d.manager.info(g)));
    expect(new Set(infos.map((i) => `${i?.version}/${i?.title}`)).size).toBe(1);
    // The losing admin re-applied its change on top of the winner: version 4, same everywhere.
    expect(infos[0]?.version).toBe(4);
    // Concurrent membership changes: both end up applied.
    await net.add("dave", 1);
    await net.add("erin", 1);
    await a1.manager.addMembers(g, ["dave"]);
    await b1.manager.addMembers(g, ["erin"]);
    await net.settle();
    infos = await Promise.all(all.map((d) => d.manager.info(g)));
    expect(new Set(infos.map((i) => JSON.stringify(i))).size).toBe(1);
    expect(infos[0]?.version).toBe(6);
    expect(infos[0]?.members.map((m) => m.accountId)).toEqual(["alice", "bob", "carol", "dave", "erin"]);
  });

  it("group receipts go to the author's devices with the group as conversation", async () => {
    const { net, a1, a2, b1, c1, g } = await threePeople();
    await a1.manager.sendText(g, "read me");
    await net.settle();
    const [msg] = b1.got;
    await b1.manager.sendReceipt(g, "alice", "read", [msg.messageId]);
    const seen: Mail[] = [];
    for (const d of [a1, a2, c1]) seen.push(...d.inbox.filter((m) => m.kind === "pairwise" && m.content.body.case === "receipt"));
    expect(seen).toHaveLength(2); // alice's two devices, not carol
    await net.settle();
  });

  it("file stores: group state, sender keys and distribution bookkeeping survive a restart", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sealpost-groups-mgr-"));
    try {
      const net = new FakeNetwork(createNodeProvider());
      const stores = (who: string) => createFileGroupStores(path.join(dir, who), { fsync: false });
      const a1 = await net.add("alice", 1, stores("a1"));
      const b1 = await net.add("bob", 1, stores("b1"));
      const g = (await a1.manager.createGroup("durable", ["bob"])).groupId;
      await net.settle();
      await a1.manager.sendText(g, "before restart");
      await b1.manager.sendText(g, "bob before restart");
      await net.settle();
      a1.restart(stores("a1"));
      b1.restart(stores("b1"));
      const sends = net.pairwiseSends;
      await a1.manager.sendText(g, "after restart");
      expect(net.pairwiseSends).toBe(sends); // no redistribution needed
      await net.settle();
      expect(b1.texts(g)).toEqual(["before restart", "after restart"]);
      await a1.manager.removeMember(g, "bob");
      await net.settle();
      b1.restart(stores("b1"));
      expect((await b1.manager.info(g))?.active).toBe(false);
      expect((await a1.manager.list()).map((x) => x.version)).toEqual([2]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
