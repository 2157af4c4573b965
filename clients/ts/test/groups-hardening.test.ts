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
import { createFileGroupStores } from "../src/store/group-file-store.js";
import { GroupDirectoryError } from "../src/groups/group-errors.js";
import { FakeNetwork } from "./groups-network.js";

/** alice (admin), bob and carol settled into one group. */
async function threePeople(net = new FakeNetwork(createNodeProvider())) {
  const a1 = net.add("alice", 1);
  const b1 = net.add("bob", 1);
  const c1 = net.add("carol", 1);
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
      const a1 = net.add("alice", 1, createFileGroupStores(path.join(dir, "alice"), { fsync: false }));
      const b1 = net.add("bob", 1, createFileGroupStores(path.join(dir, "bob"), { fsync: false }));
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
    const { net, a1, b1, g } = await threePeople(new FakeNetwork(createNodeProvider(), { retryDelayMs: 5 }));
    await a1.manager.changeSettings(g, { title: "v2" });
    b1.lookupFailures.push(new Error("unavailable"), new Error("unavailable"));
    await b1.drain();
    expect((await b1.manager.info(g))?.version).toBe(1);
    for (let i = 0; i < 100 && (await b1.manager.info(g))?.version !== 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect((await b1.manager.info(g))?.title).toBe("v2");
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
});
