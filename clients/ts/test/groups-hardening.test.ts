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
import { FakeNetwork } from "./groups-network.js";

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
});
