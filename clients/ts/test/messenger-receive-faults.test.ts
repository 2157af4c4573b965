/**
 * The receive loop under local faults, over the real stack: a failed receive-state write does
 * not poison later writes (nor stop()), an ack the server rejects for good does not jam
 * receiving, and a message that fails on every delivery is dropped after a few attempts
 * instead of making the loop reconnect forever.
 */
import { describe, expect, it } from "vitest";
import { useMessengerHarness } from "./support/messenger-harness.js";
import { Messenger, createMemoryMessengerStores } from "../src/messenger/messenger.js";
import type { ReceiveState } from "../src/store/conversation-store.js";
import { createDevice, EventLog, testBackoff, texts, uniqueId } from "./messenger-helpers.js";

const server = useMessengerHarness();

describe("receive loop faults", () => {
  it("a failed receive-state write is reported, later writes still land, and stop() resolves", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const stores = createMemoryMessengerStores();
    let failNext = 0;
    const realSet = stores.store.setReceiveState.bind(stores.store);
    stores.store.setReceiveState = async (s: ReceiveState) => {
      if (failNext > 0) {
        failNext--;
        throw Object.assign(new Error("disk full"), { code: "ENOSPC", syscall: "write" });
      }
      return realSet(s);
    };
    const bobM = await Messenger.createAccount({ serverUrl: server.url, accountId: uniqueId("bob"), deviceName: "phone", backoff: testBackoff, ...stores });
    const bob = { m: bobM, log: new EventLog(bobM) };
    alice.m.start();
    bob.m.start();
    await alice.m.sendText(bob.m.accountId, "one");
    await bob.log.wait("message", (e) => texts([e.message])[0] === "one");
    failNext = 1;
    await alice.m.sendText(bob.m.accountId, "two");
    await bob.log.wait("receive-problem", (e) => e.problem === "state-save-failed");
    await alice.m.sendText(bob.m.accountId, "three");
    await bob.log.wait("message", (e) => texts([e.message])[0] === "three");
    // Later writes land: the stored cursor reaches the newest message.
    for (let i = 0; i < 100; i++) {
      const st = await stores.store.getReceiveState();
      if (st.pendingAcks.length === 0 && st.cursor >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const st = await stores.store.getReceiveState();
    expect(st.cursor).toBeGreaterThanOrEqual(3);
    await expect(bob.m.close()).resolves.toBeUndefined();
    await alice.m.close();
  });

  it("an ack the server rejects for good is dropped and reported; receiving goes on", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    // A pending ack the server will always refuse (INVALID_ARGUMENT: sequences are 1 to 2^53-1).
    await bob.stores.store.setReceiveState({ cursor: 0, pendingAcks: [2 ** 53] });
    alice.m.start();
    bob.m.start();
    const sent = await alice.m.sendText(bob.m.accountId, "after a bad ack");
    await bob.log.wait("message", (e) => e.message.id === sent.id, 15_000);
    const problem = await bob.log.wait("receive-problem", (e) => e.problem === "ack-rejected");
    expect(problem.sequence).toBe(2 ** 53);
    await alice.m.close();
    await bob.m.close();
  });

  it("a message that fails on every delivery is dropped after a few attempts, reported and acked", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    const got: string[] = [];
    bob.m.registerContentHandler("text", async (ctx) => {
      const text = ctx.content.body.case === "text" ? ctx.content.body.value.body : "";
      if (text === "poison") throw new TypeError("handler bug");
      got.push(text);
    });
    alice.m.start();
    bob.m.start();
    await alice.m.sendText(bob.m.accountId, "poison");
    await alice.m.sendText(bob.m.accountId, "after the poison");
    await expect.poll(() => got, { timeout: 10_000 }).toEqual(["after the poison"]);
    const dropped = await bob.log.wait("receive-problem", (e) => e.problem === "poison-dropped");
    expect(dropped.from?.accountId).toBe(alice.m.accountId);
    expect(dropped.detail).not.toContain("poison");
    expect(bob.log.of("connection").filter((e) => e.state === "connecting").length).toBeLessThanOrEqual(4);
    await expect.poll(async () => (await bob.stores.store.getReceiveState()).pendingAcks, { timeout: 5_000 }).toEqual([]);
    await alice.m.close();
    await bob.m.close();
  });
});
