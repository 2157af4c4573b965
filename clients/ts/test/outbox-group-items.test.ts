/**
 * Group items in the one outbox, with the group sender as the only moving part (no server):
 * they wait until a sender is installed, a refusal fails the item at once and reaches the
 * caller that waits for the first attempt (even when the refusal comes before any I/O), and a
 * stored item leaves with a "sent" event naming its group conversation.
 */
import { describe, expect, it } from "vitest";
import { Outbox, type GroupSender } from "../src/delivery/outbox.js";
import type { MessengerEvent } from "../src/core/events.js";
import { GroupError } from "../src/groups/group-errors.js";
import { MemoryConversationStore } from "../src/store/memory-conversation-store.js";
import type { OutboxItem } from "../src/store/conversation-store.js";
import type { ServerApi } from "../src/transport/server-api.js";
import type { SessionCipher } from "../src/protocol/session-cipher.js";
import type { ContactDirectory } from "../src/directory/contact-directory.js";

const groupId = new Uint8Array(16).fill(7);

function outbox() {
  const store = new MemoryConversationStore();
  const events: MessengerEvent[] = [];
  const stored: number[] = [];
  const failed: string[] = [];
  const box = new Outbox({
    store,
    // Group items never touch the pairwise path: these would throw if they did.
    api: undefined as unknown as ServerApi,
    cipher: undefined as unknown as SessionCipher,
    directory: undefined as unknown as ContactDirectory,
    self: () => ({ accountId: "alice", deviceId: 1 }),
    emit: (e) => events.push(e),
    onStored: async (item) => void stored.push(item.seq),
    onFailed: async (_item, reason) => void failed.push(reason),
    onFatal: () => undefined,
    backoff: { baseMs: 10, maxMs: 20 },
  });
  const add = (n: number) =>
    box.enqueueTracked({ messageId: new Uint8Array(16).fill(n), content: new Uint8Array(0), to: [], label: "group", nowMs: 0, groupId });
  return { store, box, events, stored, failed, add };
}

describe("group items in the outbox", () => {
  it("a refusal before any I/O fails the item at once and reaches the caller waiting for its first attempt", async () => {
    const { store, box, events, failed, add } = outbox();
    const refusal = new GroupError("not_member", "this account is not a member");
    box.setGroupSender(async () => ({ refused: refusal }));
    box.start();
    const { attempted } = await add(1);
    expect(await attempted).toBe(refusal);
    expect(failed).toEqual(["GroupError: this account is not a member"]);
    expect(events.filter((e) => e.type === "send-failed")).toHaveLength(1);
    expect(await store.listOutbox()).toEqual([]);
    await box.stop();
  });

  it("items wait for the group sender, then leave in order with a sent event naming the group", async () => {
    const { store, box, events, stored, add } = outbox();
    box.start();
    const first = await add(1);
    const second = await add(2);
    await new Promise((r) => setTimeout(r, 50));
    expect((await store.listOutbox()).map((i) => i.seq)).toEqual([first.item.seq, second.item.seq]);
    const seen: OutboxItem[] = [];
    const send: GroupSender = async (item) => (seen.push(item), { serverTimestampMs: 1000 + item.seq, devices: 3 });
    box.setGroupSender(send);
    expect(await first.attempted).toBeUndefined();
    expect(await second.attempted).toBeUndefined();
    expect(seen.map((i) => i.seq)).toEqual([first.item.seq, second.item.seq]);
    expect(stored).toEqual([first.item.seq, second.item.seq]);
    const sent = events.filter((e) => e.type === "sent");
    expect(sent.map((e) => e.type === "sent" && e.conversation)).toEqual([`group:${"07".repeat(16)}`, `group:${"07".repeat(16)}`]);
    expect(await store.listOutbox()).toEqual([]);
    await box.stop();
  });

  it("a transient failure keeps the item for a retry; its first attempt resolves without an error", async () => {
    const { store, box, add } = outbox();
    let calls = 0;
    box.setGroupSender(async () => {
      if (++calls === 1) throw new Error("device lists kept changing");
      return { serverTimestampMs: 1, devices: 1 };
    });
    box.start();
    const { attempted } = await add(1);
    expect(await attempted).toBeUndefined();
    await box.idle();
    expect(calls).toBe(2);
    expect(await store.listOutbox()).toEqual([]);
    await box.stop();
  });
});
