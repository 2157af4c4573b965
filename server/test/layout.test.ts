/**
 * Streams and buckets are created or updated idempotently, also when several instances
 * start at once against one NATS.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support/index.js";
import { connectNats, type Nats } from "@sealpost/server/nats/connection.js";
import { ensureLayout, ensureStreams, mailboxPartition, mailboxStreamName, mailboxSubject, MAILBOX_RETENTION_MS } from "@sealpost/server/nats/layout.js";

let nats: TestNats;
let conn: Nats;
beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  conn = await connectNats(nats.url);
});
afterAll(async () => {
  await conn?.nc.close();
  await nats?.stop();
});

describe("JetStream layout", () => {
  it("is created once even when three instances start concurrently", async () => {
    await Promise.all([1, 2, 3].map(() => ensureLayout(conn.jsm, conn.kvm, 4, 1)));
    const names: string[] = [];
    for await (const s of conn.jsm.streams.list()) names.push(s.config.name);
    for (let p = 0; p < 4; p++) expect(names).toContain(mailboxStreamName(p));
    const info = await conn.jsm.streams.info(mailboxStreamName(0));
    expect(info.config.max_age).toBe(MAILBOX_RETENTION_MS * 1_000_000);
    expect(info.config.allow_direct).toBe(true);
    // Stored data survives a second start.
    const layout = await ensureLayout(conn.jsm, conn.kvm, 4, 1);
    await layout.buckets.config.put("probe", new TextEncoder().encode("kept"));
    const again = await ensureLayout(conn.jsm, conn.kvm, 4, 1);
    expect(new TextDecoder().decode((await again.buckets.config.get("probe"))!.value)).toBe("kept");
  });

  it("ensureStreams: many instances creating the same stream at once all succeed; a stream whose subjects another owns is an error", async () => {
    // Separate connections, as separate instances have (requests on one connection race less).
    const conns = await Promise.all(Array.from({ length: 6 }, () => connectNats(nats.url)));
    try {
      for (let round = 0; round < 20; round++) {
        const cfg = { name: `RACE_${round}`, subjects: [`race.${round}.>`] };
        await Promise.all(conns.map((c) => ensureStreams(c.jsm, [cfg])));
        expect((await conn.jsm.streams.info(cfg.name)).config.subjects).toEqual([`race.${round}.>`]);
      }
    } finally {
      await Promise.all(conns.map((c) => c.nc.close()));
    }
    await expect(ensureStreams(conn.jsm, [{ name: "RACE_THIEF", subjects: ["race.0.>"] }])).rejects.toThrow(/subjects overlap/);
  });

  it("stores the mailbox partition count once and refuses an instance configured with another", async () => {
    await ensureLayout(conn.jsm, conn.kvm, 4, 1); // the first test's K
    const mismatch = /mailbox partition count mismatch: this instance is configured with --mailbox-partitions 5, but the deployment's NATS \(sp_config "mailbox-partitions"\) uses 4/;
    await expect(ensureLayout(conn.jsm, conn.kvm, 5, 1)).rejects.toThrow(mismatch);
    // It created no stream for its extra partition, and a whole server refuses to start.
    await expect(conn.jsm.streams.info(mailboxStreamName(4))).rejects.toThrow(/not found/);
    await expect(startTestServer(nats.url, { mailboxPartitions: 5 })).rejects.toThrow(mismatch);
    await ensureLayout(conn.jsm, conn.kvm, 4, 1);
  });

  it("hashes a device onto a stable partition", () => {
    expect(mailboxPartition("alice", 1, 4)).toBe(mailboxPartition("alice", 1, 4));
    const spread = new Set(Array.from({ length: 64 }, (_, i) => mailboxPartition(`user${i}`, 1, 4)));
    expect(spread.size).toBe(4);
    expect(mailboxSubject("alice", 2, 4)).toMatch(/^sp\.mbox\.[0-3]\.alice\.2$/);
  });
});
