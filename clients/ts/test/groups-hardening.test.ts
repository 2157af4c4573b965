/**
 * Regression tests of the group layer's hardening: hostile wire fields, transient directory
 * failures while verifying state changes, bounded waiting queues, and the sender-key chain
 * committed only after the message was stored.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { InvalidMessageError } from "../src/crypto/errors.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { encodeSenderKeySharedBody } from "../src/protocol/sender-keys.js";
import { RecordDirectory } from "../src/store/file-store.js";
import { createFileGroupStores, FileGroupPendingStore } from "../src/store/group-file-store.js";
import type { GroupPendingItem } from "../src/store/group-interfaces.js";
import { createMemoryGroupStores, MemoryGroupPendingStore } from "../src/store/group-memory-store.js";
import { GroupDirectoryError } from "../src/groups/group-errors.js";
import { FakeNetwork } from "./groups-network.js";

/** alice (admin), bob and carol settled into one group. */
async function threePeople(net = new FakeNetwork(createNodeProvider())) {
  const a1 = await net.add("alice", 1);
  const b1 = await net.add("bob", 1);
  const c1 = await net.add("carol", 1);
  const g = (await a1.manager.createGroup("trip", ["bob", "carol"])).groupId;
  await net.settle();
  return { net, a1, b1, c1, g };
}

describe("group layer hardening", () => {
  it("a group body whose distribution_id is not 16 bytes is refused as invalid before any store is touched (file stores)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sealpost-groups-hard-"));
    try {
      const provider = createNodeProvider();
      const net = new FakeNetwork(provider);
      const a1 = await net.add("alice", 1, createFileGroupStores(path.join(dir, "alice"), { fsync: false }));
      const b1 = await net.add("bob", 1, createFileGroupStores(path.join(dir, "bob"), { fsync: false }));
      const g = await a1.manager.createGroup("trip", ["bob"]);
      await net.settle();
      await a1.manager.sendText(g.groupId, "hello");
      await net.settle();
      expect(b1.texts()).toEqual(["hello"]);
      // 200 bytes of hex make a file name longer than 255 characters (ENAMETOOLONG before the check).
      for (const distributionId of [provider.random(200), provider.random(15), new Uint8Array(0)]) {
        const body = encodeSenderKeySharedBody(distributionId, 1, 0, provider.random(64), provider.random(64));
        await expect(b1.manager.handleGroupBody(a1.self, provider.random(16), body, net.clock)).rejects.toBeInstanceOf(InvalidMessageError);
      }
      // A message_id that is not 16 bytes (a store key of the conversation) is refused too.
      const ok = encodeSenderKeySharedBody(provider.random(16), 1, 0, provider.random(64), provider.random(64));
      await expect(b1.manager.handleGroupBody(a1.self, provider.random(300), ok, net.clock)).rejects.toBeInstanceOf(InvalidMessageError);
      expect(await b1.manager.pendingCount()).toEqual({ messages: 0, distributions: 0, updates: 0 });
      // Nothing jammed: later mail still flows.
      await a1.manager.sendText(g.groupId, "still here");
      await net.settle();
      expect(b1.texts()).toEqual(["hello", "still here"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a removal checked while the signer's device list cannot be fetched waits and is verified again, not dropped", async () => {
    const { net, a1, b1, c1, g } = await threePeople(new FakeNetwork(createNodeProvider(), { retryDelayMs: 60_000 }));
    await a1.manager.removeMember(g, "carol");
    // Bob's directory look-ups fail twice (the cached list, then the refresh): a network blip.
    b1.lookupFailures.push(new Error("unavailable"), new Error("unavailable"));
    await b1.drain();
    expect((await b1.manager.info(g))?.version).toBe(1);
    expect(b1.events.filter((e) => e.type === "group-rejected")).toEqual([]);
    expect(await b1.manager.pendingCount()).toEqual({ messages: 0, distributions: 0, updates: 1 });
    // Bob's next send verifies it first: carol is gone before anything is sent.
    await b1.manager.sendText(g, "after the removal");
    expect((await b1.manager.info(g))?.members.map((m) => m.accountId)).toEqual(["alice", "bob"]);
    await net.settle();
    expect(a1.texts(g)).toEqual(["after the removal"]);
    expect(c1.texts(g)).toEqual([]);
    expect(await b1.manager.pendingCount()).toEqual({ messages: 0, distributions: 0, updates: 0 });
    b1.manager.close();
  });

  it("a held change is verified again on a timer with backoff, and by a later change of the group", async () => {
    const { a1, b1, g } = await threePeople(new FakeNetwork(createNodeProvider(), { retryDelayMs: 5 }));
    await a1.manager.changeSettings(g, { title: "v2" });
    b1.lookupFailures.push(new Error("unavailable"), new Error("unavailable"));
    await b1.drain();
    expect((await b1.manager.info(g))?.version).toBe(1);
    await expect.poll(async () => (await b1.manager.info(g))?.title, { timeout: 2_000, interval: 5 }).toBe("v2");
    // Held again, then version 3 arrives: both apply in order.
    await a1.manager.changeSettings(g, { title: "v3" });
    await a1.manager.changeSettings(g, { title: "v4" });
    b1.lookupFailures.push(new Error("unavailable"), new Error("unavailable"));
    b1.manager.close();
    await b1.drain();
    expect((await b1.manager.info(g))?.title).toBe("v4");
    expect(b1.events.filter((e) => e.type === "group-rejected")).toEqual([]);
    b1.manager.close();
  });

  it("an untrusted or unknown signer list is still a rejection", async () => {
    const { a1, b1, g } = await threePeople();
    await a1.manager.removeMember(g, "carol");
    b1.lookupFailures.push(new GroupDirectoryError("alice", "untrusted"), new GroupDirectoryError("alice", "untrusted"));
    await b1.drain();
    expect((await b1.manager.info(g))?.version).toBe(1);
    expect(b1.events.filter((e) => e.type === "group-rejected").map((e) => (e as { problem: string }).problem)).toEqual(["unknown-signer"]);
    expect(await b1.manager.pendingCount()).toEqual({ messages: 0, distributions: 0, updates: 0 });
  });

  /** Bob's waiting content (10 items, 40,000 bytes at most) after a sender flooded 25 bodies under 25 distribution ids. */
  async function flooded() {
    const provider = createNodeProvider();
    const net = new FakeNetwork(provider, { maxPendingTotal: 10, maxPendingBytes: 40_000 });
    const a1 = await net.add("alice", 1);
    const writes: number[] = [];
    const removes: number[] = [];
    const writesPerBody: number[] = [];
    class CountingPending extends MemoryGroupPendingStore {
      override async put(item: GroupPendingItem) {
        writes.push(item.id);
        return super.put(item);
      }
      override async remove(id: number) {
        removes.push(id);
        return super.remove(id);
      }
    }
    const stores = { ...createMemoryGroupStores(), pending: new CountingPending() };
    const b1 = await net.add("bob", 1, stores);
    for (let i = 0; i < 25; i++) {
      const body = encodeSenderKeySharedBody(provider.random(16), 1, 0, provider.random(100), provider.random(64));
      await b1.manager.handleGroupBody(a1.self, provider.random(16), body, net.clock);
      writesPerBody.push(writes.length);
    }
    return { provider, net, a1, b1, stores, writes, removes, writesPerBody };
  }

  it("waiting content is bounded in total items over all sender-chosen keys; the oldest go first, reported", async () => {
    const { b1 } = await flooded();
    expect(await b1.manager.pendingCount()).toEqual({ messages: 10, distributions: 0, updates: 0 });
    expect(b1.events.filter((e) => e.type === "group-rejected" && e.problem === "queue-full")).toHaveLength(15);
  });

  it("saves of waiting content write only what changed, and what is kept comes back after a restart", async () => {
    const { b1, stores, writes, removes, writesPerBody } = await flooded();
    // One record written per new item, whatever is waiting already.
    expect(writesPerBody).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(removes).toEqual(writes.slice(0, 15));
    // Only the newest 10 are stored, and they come back after a restart.
    expect((await stores.pending.list()).map((x) => x.id)).toEqual(writes.slice(15));
    b1.restart(stores);
    expect(await b1.manager.pendingCount()).toEqual({ messages: 10, distributions: 0, updates: 0 });
  });

  it("waiting content is bounded in total bytes: big bodies push out the oldest until the total fits", async () => {
    const { provider, net, a1, b1, stores } = await flooded();
    const big = () => encodeSenderKeySharedBody(provider.random(16), 1, 0, provider.random(15_000), provider.random(64));
    for (let i = 0; i < 3; i++) await b1.manager.handleGroupBody(a1.self, provider.random(16), big(), net.clock);
    const left = await b1.manager.pendingCount();
    expect(left.messages).toBeLessThanOrEqual(3);
    expect(left.messages).toBeGreaterThanOrEqual(2);
    const stored = await stores.pending.list();
    expect(stored.reduce((n, x) => n + (x.kind === "body" ? x.sharedBody.length + x.messageId.length : 0), 0)).toBeLessThanOrEqual(40_000);
  });

  it("file stores: a pending snapshot of an earlier version becomes one record per item", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sealpost-groups-pending-"));
    try {
      const sender = { accountId: "alice", deviceId: 1 };
      await new RecordDirectory(dir, { fsync: false }).write("pending", {
        bodies: [{ sender, messageId: new Uint8Array(16).fill(1), sharedBody: new Uint8Array([1, 2, 3]), serverTimestampMs: 5 }],
        distributions: [{ sender, distribution: new Uint8Array([4]) }],
        updates: [{ from: sender, signed: new Uint8Array([5]) }],
      });
      const store = new FileGroupPendingStore(dir, { fsync: false });
      const items = await store.list();
      expect(items.map((i) => [i.id, i.kind])).toEqual([
        [1, "body"],
        [2, "distribution"],
        [3, "update"],
      ]);
      expect(items[0]).toMatchObject({ sender, serverTimestampMs: 5, sharedBody: new Uint8Array([1, 2, 3]) });
      await store.remove(2);
      expect((await store.list()).map((i) => i.id)).toEqual([1, 3]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a group message whose storing fails is not lost: the chain is committed only after the message was stored", async () => {
    const { a1, b1, g } = await threePeople();
    await a1.manager.sendText(g, "one");
    await a1.manager.sendText(g, "two");
    const mail = b1.inbox.splice(0);
    b1.receiveFailures.push(new Error("disk full"));
    for (const m of mail) await b1.process(m);
    expect(b1.texts(g)).toEqual(["two"]);
    expect(b1.errors.map((e) => e.code)).toEqual(["Error: disk full"]);
    // The receive loop did not ack "one": it comes again and still decrypts (then only once).
    const one = mail.filter((m) => m.kind === "group")[0];
    await b1.process(one);
    await b1.process(one);
    expect(b1.texts(g)).toEqual(["two", "one"]);
    expect(b1.errors.map((e) => e.code)).toEqual(["Error: disk full", "duplicate_message"]);
  });

  it("GroupCipher.beginDecrypt changes nothing until commit; commits of one chain in any order re-plan on the current record", async () => {
    const { net, a1, b1, g } = await threePeople();
    for (const t of ["m0", "m1", "m2"]) await a1.manager.sendText(g, t);
    const mail = b1.inbox.splice(0);
    for (const m of mail) if (m.kind === "pairwise") await b1.process(m); // the sender key
    const bodies = mail.filter((m) => m.kind === "group").map((m) => (m as { body: Uint8Array }).body);
    expect(bodies).toHaveLength(3);
    const cipher = b1.manager.cipher;
    const p0 = await cipher.beginDecrypt(a1.self, bodies[0]);
    p0.discard();
    await expect(p0.commit()).rejects.toBeInstanceOf(InvalidMessageError);
    // Not committed: it decrypts again. Three at once, committed out of order.
    const ps = [];
    for (const b of bodies) ps.push(await cipher.beginDecrypt(a1.self, b));
    expect(ps.map((p) => (p.content.body.case === "text" ? p.content.body.value.body : ""))).toEqual(["m0", "m1", "m2"]);
    await ps[2].commit();
    await ps[0].commit();
    await ps[1].commit();
    await ps[1].commit(); // idempotent
    for (const b of bodies) await expect(cipher.decrypt(a1.self, b)).rejects.toMatchObject({ code: "duplicate_message" });
    expect(b1.errors).toEqual([]);
    void net;
  });
});
