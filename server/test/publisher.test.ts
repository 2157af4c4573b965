/**
 * The core-publish JetStream publisher against a real nats-server: every PubAck is matched
 * to its publish, dedupe by Nats-Msg-Id, stream mismatch and no-stream errors keep the names
 * store-errors.ts classifies, and a lost ack times out. processed() orders a core publish
 * before anything another connection publishes after it, and neither hangs nor rejects when
 * NATS is frozen or the connection closed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDelayingProxy, startTestNats, type TestNats } from "@sealpost/test-support";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { JetStreamPublisher } from "../src/nats/publisher.js";
import { isTransientStoreError } from "../src/nats/store-errors.js";

let nats: TestNats;
let conn: Nats;
beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  conn = await connectNats(nats.url);
  await conn.jsm.streams.add({ name: "PUBTEST", subjects: ["pubtest.>"], duplicate_window: 60_000_000_000 });
  await conn.jsm.streams.add({ name: "OTHER", subjects: ["other.>"] });
});
afterAll(async () => {
  await conn?.nc.close();
  await nats?.stop();
});

describe("JetStreamPublisher", () => {
  it("stores 2,000 pipelined publishes and answers each with its own sequence", async () => {
    const before = (await conn.jsm.streams.info("PUBTEST")).state.last_seq;
    const acks = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => conn.publisher.publish(`pubtest.${i % 7}`, new TextEncoder().encode(`m${i}`), { expectStream: "PUBTEST" })),
    );
    const seqs = acks.map((a) => a.seq);
    expect(new Set(seqs).size).toBe(2000);
    expect(Math.min(...seqs)).toBe(before + 1);
    expect(Math.max(...seqs)).toBe(before + 2000);
    // Each ack belongs to its own message.
    for (const i of [0, 777, 1999]) {
      const m = await conn.jsm.streams.getMessage("PUBTEST", { seq: acks[i].seq });
      expect(new TextDecoder().decode(m!.data)).toBe(`m${i}`);
    }
    expect(conn.publisher.inFlight).toBe(0);
  });

  it("dedupes by msgId inside the window: the retry gets the original sequence", async () => {
    const a = await conn.publisher.publish("pubtest.d", Uint8Array.of(1), { msgId: "same-id" });
    const b = await conn.publisher.publish("pubtest.d", Uint8Array.of(2), { msgId: "same-id" });
    expect(a.duplicate).toBe(false);
    expect(b).toEqual({ stream: "PUBTEST", seq: a.seq, duplicate: true });
  });

  it("refuses a subject of another stream than the expected one (JetStreamApiError, not transient)", async () => {
    const err = await conn.publisher.publish("other.x", Uint8Array.of(1), { expectStream: "PUBTEST" }).catch((e) => e);
    expect(err.name).toBe("JetStreamApiError");
    expect(String(err.message)).toMatch(/stream/i);
    expect(isTransientStoreError(err)).toBe(false);
  });

  it("writes every JetStream header it is given: the stored message carries them, and an expected last sequence is enforced", async () => {
    const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const a = await conn.publisher.publish("pubtest.h", Uint8Array.of(1), { msgId: "h-1", expectStream: "PUBTEST", traceparent: tp, expectLastSubjectSeq: 0 });
    const stored = await conn.jsm.streams.getMessage("PUBTEST", { seq: a.seq });
    expect([stored!.header.get("Nats-Msg-Id"), stored!.header.get("traceparent")]).toEqual(["h-1", tp]);
    // A second "create" of the same subject: its last sequence is no longer 0.
    const err = await conn.publisher.publish("pubtest.h", Uint8Array.of(2), { msgId: "h-2", expectLastSubjectSeq: 0 }).catch((e) => e);
    expect(err.name).toBe("JetStreamApiError");
    expect(String(err.message)).toMatch(/wrong last sequence/i);
    expect((await conn.publisher.publish("pubtest.h", Uint8Array.of(3), { msgId: "h-3", expectLastSubjectSeq: a.seq })).duplicate).toBe(false);
    // The unconfirmed publish writes the same headers (no PubAck to check: read it back).
    conn.publisher.publishUnconfirmed("pubtest.u", Uint8Array.of(4), { msgId: "u-1", traceparent: tp });
    await conn.publisher.processed();
    const u = await conn.jsm.streams.getMessage("PUBTEST", { last_by_subj: "pubtest.u" });
    expect([u!.header.get("Nats-Msg-Id"), u!.header.get("traceparent")]).toEqual(["u-1", tp]);
  });

  it("refuses a header value that would break the header block (a bug, never sent)", async () => {
    for (const msgId of ["a\r\nNats-Expected-Stream: OTHER", "a\nb", " leading", "é"]) {
      const err = await conn.publisher.publish("pubtest.bad", Uint8Array.of(1), { msgId }).catch((e) => e);
      expect(err).toBeInstanceOf(TypeError);
    }
    expect(() => conn.publisher.publishUnconfirmed("pubtest.bad", Uint8Array.of(1), { msgId: "x\ry" })).toThrow(TypeError);
    expect((await conn.jsm.streams.info("PUBTEST", { subjects_filter: "pubtest.bad" })).state.subjects ?? {}).toEqual({});
  });

  it("answers NoResponders for a subject no stream stores", async () => {
    const err = await conn.publisher.publish("nostream.x", Uint8Array.of(1)).catch((e) => e);
    expect(err.name).toBe("NoResponders");
    expect(isTransientStoreError(err)).toBe(true);
  });

  it("direct gets: the message by sequence and next by subject, null when there is none", async () => {
    await conn.jsm.streams.update("PUBTEST", { ...(await conn.jsm.streams.info("PUBTEST")).config, allow_direct: true });
    const a = await conn.publisher.publish("pubtest.get.a", new TextEncoder().encode("first"));
    await conn.publisher.publish("pubtest.get.b", new TextEncoder().encode("other"));
    const c = await conn.publisher.publish("pubtest.get.a", new TextEncoder().encode("second"));
    const bySeq = await conn.publisher.directGet("PUBTEST", { seq: a.seq });
    expect({ seq: bySeq?.seq, subject: bySeq?.subject, data: new TextDecoder().decode(bySeq?.data) }).toEqual({
      seq: a.seq,
      subject: "pubtest.get.a",
      data: "first",
    });
    expect((await conn.publisher.directGet("PUBTEST", { seq: a.seq + 1, next_by_subj: "pubtest.get.a" }))?.seq).toBe(c.seq);
    expect(await conn.publisher.directGet("PUBTEST", { seq: c.seq + 1, next_by_subj: "pubtest.get.a" })).toBeNull();
  });

  it("times out a publish whose ack never comes", async () => {
    let t = 0;
    const pub = new JetStreamPublisher(conn.nc, 100, () => t);
    // A plain subscriber answers nothing: the reply never comes.
    const sub = conn.nc.subscribe("silent.x", { callback: () => {} });
    const p = pub.publish("silent.x", Uint8Array.of(1));
    t = 1_000;
    const err = await p.catch((e) => e);
    expect(err.name).toBe("TimeoutError");
    expect(isTransientStoreError(err)).toBe(true);
    expect(pub.inFlight).toBe(0);
    sub.unsubscribe();
    pub.close();
  });

  it("processed(): a core publish reaches subscribers before what another connection publishes after it", async () => {
    // The publisher's link to nats-server holds its bytes for 150 ms.
    const proxy = await startDelayingProxy(nats.url, 150);
    const slow = await connectNats(proxy.url, "slow-publisher");
    const probe = await connectNats(nats.url, "order-probe");
    try {
      const seen: string[] = [];
      probe.nc.subscribe("order.*", {
        callback: (_e, m) => {
          seen.push(m.subject);
        },
      });
      await probe.nc.flush();
      for (const wait of ["flushed", "processed"] as const) {
        seen.length = 0;
        slow.publisher.publishCore(`order.${wait}-first`);
        await (wait === "flushed" ? slow.publisher.flushed() : slow.publisher.processed());
        conn.nc.publish(`order.${wait}-second`);
        await conn.nc.flush();
        while (seen.length < 2) await new Promise((r) => setTimeout(r, 10));
        // Handing the publish to the socket is not enough; nats-server's PONG is.
        expect(seen).toEqual(wait === "flushed" ? [`order.${wait}-second`, `order.${wait}-first`] : [`order.${wait}-first`, `order.${wait}-second`]);
      }
    } finally {
      await Promise.all([slow.nc.close(), probe.nc.close()]);
      await proxy.close();
    }
  });

  it("subscribe(): interest is in place for what the same turn publishes after it; unsubscribe silences it at once", async () => {
    const got: string[] = [];
    const sub = conn.publisher.subscribe(
      "turn.a",
      (m) => got.push(new TextDecoder().decode(m.data)),
      () => got.push("error"),
    );
    // Queued in the same turn as the SUB and written after it: nats-server delivers it back.
    conn.publisher.publishCore("turn.a", new TextEncoder().encode("first"));
    await conn.publisher.processed();
    for (let i = 0; i < 100 && got.length < 1; i++) await new Promise((r) => setTimeout(r, 5));
    expect(got).toEqual(["first"]);
    // Published before the UNSUB goes out, and after it: neither reaches the callback.
    conn.publisher.publishCore("turn.a", new TextEncoder().encode("before-unsub"));
    await conn.publisher.flushed();
    sub.unsubscribe();
    sub.unsubscribe(); // idempotent
    conn.publisher.publishCore("turn.a", new TextEncoder().encode("after-unsub"));
    await conn.publisher.processed();
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual(["first"]);
  });

  it("subscribe(): one unsubscribed in its own turn hears nothing; a closed connection throws or reports", async () => {
    const other = await connectNats(nats.url, "turn-subscriptions");
    const got: string[] = [];
    const never = other.publisher.subscribe(
      "turn.b",
      () => got.push("never"),
      () => got.push("never-error"),
    );
    never.unsubscribe();
    other.publisher.publishCore("turn.b");
    await other.publisher.processed();
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual([]);
    // The connection closes before the subscription's turn comes: its onError hears of it.
    const late = new Promise<Error>((resolve) => other.publisher.subscribe("turn.c", () => {}, resolve));
    const closing = other.nc.close();
    expect((await late).name).toMatch(/Closed|Drain/i);
    await closing;
    // Closed already: refused at once.
    expect(() =>
      other.publisher.subscribe(
        "turn.d",
        () => {},
        () => {},
      ),
    ).toThrow(/closed/i);
  });

  it("processed() neither hangs nor rejects: NATS frozen (gives up after its bound), connection closed", async () => {
    const other = await connectNats(nats.url, "processed-closing");
    other.publisher.publishCore("order.frozen");
    nats.pause!();
    try {
      await expect(other.publisher.processed(300)).resolves.toBeUndefined();
    } finally {
      nats.resume!();
    }
    await other.nc.close();
    other.publisher.publishCore("order.closed");
    await expect(other.publisher.processed(300)).resolves.toBeUndefined();
  });
});
