/**
 * History transfer over the real stack (nats-server + server): a phone with 10,000 stored
 * messages sends its history to a newly linked laptop, which imports it and ends with the
 * same history, then both keep receiving; an import interrupted midway (a failing disk)
 * resumes after a restart without duplicates; a tampered archive (its digest changed) is
 * refused; `sinceMs` bounds what goes; the account's groups travel too, and the new device
 * can send to them at once.
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ContentSchema, HistoryArchiveSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { Messenger } from "../src/messenger/messenger.js";
import { attachmentPointer, uploadAttachment } from "../src/transport/attachments.js";
import { directConversation, type StoredMessage } from "../src/store/conversation-store.js";
import { buildHistoryArchive, HISTORY_CONTENT_TYPE } from "../src/messenger/history-transfer.js";
import { MessengerGroups } from "../src/groups/messenger-groups.js";
import { createMemoryGroupStores } from "../src/store/group-memory-store.js";
import { useMessengerHarness } from "./support/messenger-harness.js";
import { createDevice, EventLog, linkDevice, testBackoff, uniqueId } from "./messenger-helpers.js";

const server = useMessengerHarness();
const N = 10_000;

/** Fills a device's store with `n` messages over 5 conversations (half incoming, read or not). */
async function fill(d: Awaited<ReturnType<typeof createDevice>>, n: number, baseMs: number) {
  const self = d.m.address;
  for (let i = 0; i < n; i++) {
    const peer = `peer-${i % 5}`;
    const incoming = i % 2 === 0;
    const m: StoredMessage = {
      id: i.toString(16).padStart(32, "0"),
      conversation: directConversation(peer),
      sender: incoming ? { accountId: peer, deviceId: 1 } : self,
      outgoing: !incoming,
      sentAtMs: baseMs + i,
      storedAtMs: baseMs + i,
      body: { kind: "text", text: `message ${i}` },
      status: incoming ? "received" : "delivered",
      deliveredTo: incoming ? [] : [`${peer}.1`],
      readBy: [],
      read: incoming && i % 4 === 0,
    };
    await d.stores.store.putMessage(m);
  }
}

const ids = async (m: Messenger, peer: string) => (await m.history(peer)).map((x) => `${x.id}:${x.read}:${x.status}`);

describe("history transfer", () => {
  it("sends 10,000 messages to a new device: the same history on both, and both keep receiving", async () => {
    const alice = await createDevice(server.url, uniqueId("hist-alice"), { file: true });
    const bob = await createDevice(server.url, uniqueId("hist-bob"));
    await alice.m.start();
    bob.m.start();
    await bob.m.sendText(alice.m.accountId, "a real one");
    await alice.log.wait("message", (e) => e.message.body.kind === "text" && e.message.body.text === "a real one");
    await fill(alice, N, Date.now() - 1_000_000);

    const laptop = await linkDevice(alice.m, server.url, { file: true });
    laptop.m.start();
    const sent = await alice.m.transferHistory(laptop.m.address.deviceId, { waitMs: 20_000 });
    expect(sent.messages).toBe(N + 1);
    await alice.log.wait("sent", (e) => e.messageId === sent.messageId);
    await laptop.log.wait("history-transfer", (e) => e.phase === "done", 60_000);
    const progress = laptop.log.of("history-transfer").filter((e) => e.phase === "importing");
    expect(progress.length).toBeGreaterThanOrEqual(N / 500);
    for (const peer of ["peer-0", "peer-3", bob.m.accountId]) expect(await ids(laptop.m, peer)).toEqual(await ids(alice.m, peer));

    // Both keep receiving (and the laptop does not show the old message again).
    await bob.m.sendText(alice.m.accountId, "after the transfer");
    for (const d of [alice, laptop]) await d.log.wait("message", (e) => e.message.body.kind === "text" && e.message.body.text === "after the transfer");
    expect((await laptop.m.history(bob.m.accountId)).map((x) => (x.body.kind === "text" ? x.body.text : ""))).toEqual(["a real one", "after the transfer"]);
    await Promise.all([alice.m.close(), bob.m.close(), laptop.m.close()]);
  }, 180_000);

  it("an import interrupted midway resumes after a restart, without duplicates", async () => {
    const alice = await createDevice(server.url, uniqueId("hist-carol"));
    alice.m.start();
    await fill(alice, 3000, Date.now() - 1_000_000);
    const laptop = await linkDevice(alice.m, server.url, { file: true });
    // The laptop's disk fails once, at the 1,200th message written.
    let puts = 0;
    const put = laptop.stores.store.putMessage.bind(laptop.stores.store);
    laptop.stores.store.putMessage = async (m) => {
      if (++puts === 1200) throw Object.assign(new Error("EIO: i/o error, write"), { code: "EIO", syscall: "write" });
      return put(m);
    };
    laptop.m.start();
    await alice.m.transferHistory(laptop.m.address.deviceId, { waitMs: 20_000 });
    const failed = await laptop.log.wait("history-transfer", (e) => e.phase === "failed", 60_000);
    expect(failed.detail).toMatch(/EIO/);
    expect(failed.done).toBe(1000); // progress saved at the last batch before the failure
    await laptop.m.close();

    // Restart from the same stores: the import goes on from 1,000.
    const again = await Messenger.open({ serverUrl: server.url, backoff: testBackoff, ...laptop.stores });
    const log = new EventLog(again);
    again.start();
    const done = await log.wait("history-transfer", (e) => e.phase === "done", 60_000);
    expect(done.total).toBe(3000);
    expect(log.of("history-transfer").find((e) => e.phase === "downloading")?.done).toBe(1000);
    for (let p = 0; p < 5; p++) {
      const h = await again.history(`peer-${p}`);
      expect(h).toHaveLength(600);
      expect(new Set(h.map((x) => x.id)).size).toBe(600);
    }
    await Promise.all([alice.m.close(), again.close()]);
  }, 180_000);

  it("a tampered archive is refused, and sinceMs bounds what goes", async () => {
    const alice = await createDevice(server.url, uniqueId("hist-dave"));
    alice.m.start();
    const now = Date.now();
    await fill(alice, 100, now - 10 * 86_400_000); // ten days ago
    await fill(alice, 0, now);
    const laptop = await linkDevice(alice.m, server.url);
    laptop.m.start();
    // An archive whose pointer names another digest (as if the stored bytes changed).
    const { bytes, count } = await buildHistoryArchive(alice.stores.store, { accountId: alice.m.accountId, fromDeviceId: 1, sinceMs: 0, nowMs: now });
    const api = alice.m as unknown as { api: Parameters<typeof uploadAttachment>[0]; provider: Parameters<typeof uploadAttachment>[1] };
    const info = await uploadAttachment(api.api, api.provider, bytes, { contentType: HISTORY_CONTENT_TYPE });
    info.digest = info.digest.slice();
    info.digest[0] ^= 1;
    await alice.m.sendContent(
      create(ContentSchema, {
        body: {
          case: "sync",
          value: {
            kind: {
              case: "history",
              value: create(HistoryArchiveSchema, { deviceId: laptop.m.address.deviceId, archive: attachmentPointer(info), messageCount: count }),
            },
          },
        },
      }),
      [],
      "history",
    );
    const failed = await laptop.log.wait("history-transfer", (e) => e.phase === "failed", 30_000);
    expect(failed.detail).toMatch(/digest|corrupt|does not match/i);
    expect(await laptop.m.history("peer-0")).toEqual([]);

    // Only the last 5 days: nothing of the 10-day-old messages.
    const recent = await alice.m.transferHistory(laptop.m.address.deviceId, { sinceMs: now - 5 * 86_400_000, waitMs: 20_000 });
    expect(recent.messages).toBe(0);
    await Promise.all([alice.m.close(), laptop.m.close()]);
  }, 120_000);

  it("the account's groups travel with the history: the new device knows them and can send to them", async () => {
    const alice = await createDevice(server.url, uniqueId("hist-erin"));
    const bob = await createDevice(server.url, uniqueId("hist-frank"));
    const ag = MessengerGroups.attach(alice.m, createMemoryGroupStores());
    const bg = MessengerGroups.attach(bob.m, createMemoryGroupStores());
    alice.m.start();
    bob.m.start();
    const group = await ag.createGroup("club", [bob.m.accountId]);
    await ag.sendText(group.groupId, "before the laptop");
    await expect.poll(async () => (await bg.history(group.groupId)).length, { timeout: 20_000 }).toBe(1);

    const laptop = await linkDevice(alice.m, server.url);
    const lg = MessengerGroups.attach(laptop.m, createMemoryGroupStores());
    laptop.m.start();
    await alice.m.transferHistory(laptop.m.address.deviceId, { waitMs: 20_000 });
    await laptop.log.wait("history-transfer", (e) => e.phase === "done", 30_000);
    expect((await lg.list()).map((g) => g.groupId)).toEqual([group.groupId]);
    expect((await lg.history(group.groupId)).map((x) => (x.body.kind === "text" ? x.body.text : ""))).toEqual(["before the laptop"]);
    await lg.sendText(group.groupId, "from the laptop");
    await expect
      .poll(async () => (await bg.history(group.groupId)).map((x) => (x.body.kind === "text" ? x.body.text : "")), { timeout: 20_000 })
      .toEqual(["before the laptop", "from the laptop"]);
    await Promise.all([alice.m.close(), bob.m.close(), laptop.m.close()]);
  }, 120_000);
});
