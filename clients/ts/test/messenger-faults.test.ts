/**
 * Messenger under faults, on its own nats-server: a server restart (and an app restart)
 * while messages wait in the outbox, a nats-server restart under a live receive loop, and
 * a scan of everything the server stores (every message of every JetStream stream, KV
 * buckets included) for message plaintext.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "@sealpost/server";
import { connectNats } from "@sealpost/server/nats";
import { Messenger } from "../src/messenger/messenger.js";
import { createDevice, EventLog, linkDevice, removeTempDirs, testBackoff, texts, uniqueId } from "./messenger-helpers.js";

let nats: TestNats;
let server: RunningServer;
let port: number;

async function startServerOnPort(): Promise<RunningServer> {
  for (let i = 0; ; i++) {
    try {
      return await startTestServer(nats.url, { port });
    } catch (err) {
      if (i > 20 || !/EADDRINUSE/.test(String(err))) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  server = await startTestServer(nats.url);
  port = server.port;
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
  await removeTempDirs();
});

const plaintexts: string[] = [];
const secretText = (s: string) => {
  plaintexts.push(s);
  return s;
};

describe("outbox across restarts", () => {
  it("sends queued while the server is down (and across an app restart) go out in order, exactly once", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"), { file: true });
    const bob = await createDevice(server.url, uniqueId("bob"));
    alice.m.start();
    bob.m.start();
    await alice.m.sendText(bob.m.accountId, secretText("warm-up message: sessions exist"));
    await bob.log.wait("message");

    await server.close();
    const queued: string[] = [];
    for (let i = 0; i < 3; i++) queued.push((await alice.m.sendText(bob.m.accountId, secretText(`written while the server is down #${i}`))).id);
    // The app is closed and reopened while the server is still down.
    await alice.m.close();
    const reopened = await Messenger.open({ serverUrl: server.url, backoff: testBackoff, ...alice.stores });
    const log = new EventLog(reopened);
    reopened.start();
    queued.push((await reopened.sendText(bob.m.accountId, secretText("written after the app restart"))).id);
    expect((await reopened.history(bob.m.accountId)).filter((m) => m.status === "queued")).toHaveLength(4);

    server = await startServerOnPort();
    await reopened.flush();
    await bob.log.wait("message", (e) => e.message.id === queued[3]);
    const got = bob.log.of("message").map((e) => e.message.id);
    expect(got.slice(1)).toEqual(queued);
    expect(texts(await bob.m.history(reopened.accountId))).toEqual([
      "warm-up message: sessions exist",
      "written while the server is down #0",
      "written while the server is down #1",
      "written while the server is down #2",
      "written after the app restart",
    ]);
    expect(log.of("sent").filter((e) => e.label === "text")).toHaveLength(4);
    await reopened.close();
    await bob.m.close();
  });

  it("the receive loop reconnects after a nats-server restart and resumes from its cursor", async () => {
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    alice.m.start();
    bob.m.start();
    await alice.m.sendText(bob.m.accountId, secretText("before the NATS restart"));
    await bob.log.wait("message");
    await nats.restart!();
    const after = await alice.m.sendText(bob.m.accountId, secretText("after the NATS restart"));
    await bob.log.wait("message", (e) => e.message.id === after.id, 40_000);
    expect(texts(await bob.m.history(alice.m.accountId))).toEqual(["before the NATS restart", "after the NATS restart"]);
    await alice.m.close();
    await bob.m.close();
  });
});

describe("what the server stores", () => {
  it("contains no message plaintext: every stream message and KV value scanned", async () => {
    // Mail waiting for an offline device (unacked, so still stored), a file, and receipts.
    const alice = await createDevice(server.url, uniqueId("alice"));
    const bob = await createDevice(server.url, uniqueId("bob"));
    const offline = await linkDevice(bob.m, server.url);
    alice.m.start();
    bob.m.start();
    const file = new TextEncoder().encode(secretText("attachment plaintext: the quarterly numbers are 42").repeat(50));
    const m1 = await alice.m.sendText(bob.m.accountId, secretText("the eagle lands at midnight"));
    await alice.m.sendFile(bob.m.accountId, file, { contentType: "text/plain", fileName: secretText("secret-plans.txt") });
    await bob.log.wait("message", (e) => e.message.id === m1.id);
    await bob.m.sendText(alice.m.accountId, secretText("copy that, see you at the pier"));
    await bob.m.markRead(alice.m.accountId);
    await bob.m.flush();
    await alice.m.flush();

    const probe = await connectNats(nats.url, "plaintext-scan");
    try {
      const needles = plaintexts.map((p) => new TextEncoder().encode(p.slice(0, 24)));
      let scanned = 0;
      let mailbox = 0;
      for await (const info of probe.jsm.streams.list()) {
        const { first_seq, last_seq } = info.state;
        for (let seq = first_seq; seq <= last_seq && seq > 0; seq++) {
          const msg = await probe.jsm.streams.getMessage(info.config.name, { seq }).catch(() => null);
          if (!msg) continue;
          scanned++;
          if (info.config.name.startsWith("SP_MAILBOX")) mailbox++;
          const hay = Buffer.concat([Buffer.from(msg.data), Buffer.from(msg.subject)]);
          for (const n of needles) expect(hay.includes(Buffer.from(n)), `${info.config.name} seq ${seq}`).toBe(false);
        }
      }
      // The scan saw real data: mail for the offline laptop is still stored.
      expect(mailbox).toBeGreaterThan(2);
      expect(scanned).toBeGreaterThan(mailbox);
    } finally {
      await probe.nc.close();
    }
    void offline;
    await alice.m.close();
    await bob.m.close();
    await offline.m.close();
  });
});
