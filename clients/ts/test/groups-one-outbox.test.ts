/**
 * Group messages share the Messenger's one durable outbox (a lane per group): a group send and
 * the key distribution it needs never wait behind a stuck 1:1 lane, and group messages an
 * earlier version queued in its own group outbox are moved into the Messenger's outbox and sent.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { SendRequest } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { TextSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { describe, expect, it } from "vitest";
import { useMessengerHarness } from "./support/messenger-harness.js";
import { fromHex } from "../src/crypto/bytes.js";
import { MessengerGroups } from "../src/groups/messenger-groups.js";
import { groupContent } from "../src/protocol/group-cipher.js";
import { createMemoryGroupStores } from "../src/store/group-memory-store.js";
import { createFileGroupStores } from "../src/store/group-file-store.js";
import { Messenger } from "../src/messenger/messenger.js";
import { EventLog, createDevice, testBackoff, texts, uniqueId } from "./messenger-helpers.js";

const server = useMessengerHarness();

describe("one outbox for 1:1 and group mail", () => {
  it("a group send and its key distribution go out while a 1:1 lane waits an hour", async () => {
    // Alice retries an item-specific failure only after an hour (no jitter).
    const alice = await createDevice(server.url, uniqueId("alice"), { backoff: { baseMs: 3_600_000, maxMs: 3_600_000, random: () => 0.99 } });
    const bob = await createDevice(server.url, uniqueId("bob"));
    const carol = await createDevice(server.url, uniqueId("carol"));
    // Every Send to carol fails as the server would for that request alone.
    const channel = alice.m.api.channel;
    const original = channel.send.bind(channel);
    channel.send = (async (req: SendRequest) => {
      if (req.entries.some((e) => e.device?.accountId === carol.m.accountId)) throw new ConnectError("held for the test", Code.Aborted);
      return original(req);
    }) as typeof channel.send;
    const aliceGroups = MessengerGroups.attach(alice.m, createMemoryGroupStores());
    const bobGroups = MessengerGroups.attach(bob.m, createMemoryGroupStores());
    for (const d of [alice, bob, carol]) d.m.start();

    const toCarol = await alice.m.sendText(carol.m.accountId, "stuck");
    await alice.log.wait("send-retry", (e) => e.messageId === toCarol.id);
    const g = await aliceGroups.createGroup("lunch", [bob.m.accountId]);
    // The first group message needs a key distribution to bob: both go out past carol's lane.
    const sent = await aliceGroups.sendText(g.groupId, "hello bob");
    expect(sent.status).toBe("sent");
    await bob.log.wait("message", (e) => e.message.id === sent.id);
    expect(texts(await bobGroups.history(g.groupId))).toEqual(["hello bob"]);
    expect((await alice.m.history(carol.m.accountId)).map((m) => m.status)).toEqual(["queued"]);
    for (const d of [alice, bob, carol]) await d.m.close();
  });

  it("group messages queued in an earlier version's group outbox are moved into the outbox and sent", async () => {
    const aliceDev = await createDevice(server.url, uniqueId("alice"), { file: true });
    const groupDir = `${aliceDev.dir}/groups`;
    const bob = await createDevice(server.url, uniqueId("bob"));
    const bobGroups = MessengerGroups.attach(bob.m, createMemoryGroupStores());
    bob.m.start();
    const aliceGroups = MessengerGroups.attach(aliceDev.m, createFileGroupStores(groupDir, { fsync: false }));
    aliceDev.m.start();
    const g = await aliceGroups.createGroup("legacy", [bob.m.accountId]);
    await aliceGroups.sendText(g.groupId, "before");
    await bob.log.wait("message", (e) => e.message.body.kind === "text" && e.message.body.text === "before");
    await aliceDev.m.close();

    // What an earlier version left queued in <groups>/groups-outbox.
    const legacy = createFileGroupStores(groupDir, { fsync: false }).outbox!;
    const messageId = fromHex("0123456789abcdef0123456789abcdef");
    const content = groupContent(fromHex(g.groupId), {
      messageId,
      sentAtMs: BigInt(Date.now()),
      body: { case: "text", value: create(TextSchema, { body: "queued by the old version" }) },
    });
    await legacy.put({ seq: 1, messageId, groupId: fromHex(g.groupId), content: toBinary(ContentSchema, content), createdAtMs: Date.now() });

    const m = await Messenger.open({ serverUrl: server.url, backoff: testBackoff, ...aliceDev.stores });
    const log = new EventLog(m);
    const again = MessengerGroups.attach(m, createFileGroupStores(groupDir, { fsync: false }));
    m.start();
    await again.flush();
    await bob.log.wait("message", (e) => e.message.id === "0123456789abcdef0123456789abcdef");
    await log.wait("sent", (e) => e.messageId === "0123456789abcdef0123456789abcdef" && e.conversation === `group:${g.groupId}`);
    expect(await legacy.list()).toEqual([]);
    expect(texts(await bobGroups.history(g.groupId))).toEqual(["before", "queued by the old version"]);
    await m.close();
    await bob.m.close();
  });
});
