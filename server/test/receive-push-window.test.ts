/**
 * Live push under load, on a real nats-server: a record this instance stored goes to the
 * device's stream in memory even when the stream cannot send it at once, and never ahead of
 * mail a read must send first.
 *
 * Before: a record offered while the window was full, or while a read pass was running, was
 * dropped and read back from the stream later. Under steady load each such read pass saw new
 * mail arrive and asked for another, so a busy stream stayed in reads: a quarter to a third
 * of the Session bench's deliveries were reads (mailbox gets and batch consumers, nats-server
 * work) instead of pushes.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { randomBytes } from "node:crypto";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { Mailboxes, type MailboxLocation } from "../src/delivery/mailbox.js";
import { ReceiveStream, type ReceiveStreamDeps } from "../src/delivery/receive-stream.js";
import { ReceiveHub } from "../src/delivery/receive-hub.js";
import { Acker } from "../src/delivery/ack.js";
import { defaultLimits } from "../src/delivery/limits.js";
import type { AuthenticatedDevice } from "../src/auth/authenticator.js";
import type { StreamMsg } from "../src/nats/stream-reads.js";
import { countingAckOps, nextEvent, senderRecord, withMethod } from "./delivery-helpers.js";

let nats: TestNats;
let server: RunningServer;

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  server = await startTestServer(nats.url, { tokenSecret: "test-secret-test-secret-test-secret!" });
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
});

/**
 * A stream of a fresh device with the given window, driven by hand, at the head of its empty
 * mailbox. Its reads of the mailbox are counted (`reads`), and `afterRead` runs after a
 * read's answer came back and before the stream sees it.
 */
async function openStream(window: number) {
  const ctx = server.context;
  const real = new Mailboxes(ctx.nats, ctx.layout.partitions);
  const counted = { reads: 0, gets: 0, afterRead: undefined as ((m: StreamMsg | null) => Promise<void>) | undefined };
  const mailboxes = withMethod(
    withMethod(real, "next", async (loc: MailboxLocation, after: number) => {
      counted.reads++;
      const m = await real.next(loc, after);
      await counted.afterRead?.(m);
      return m;
    }),
    "bySeq",
    (stream: string, seq: number) => (counted.gets++, real.bySeq(stream, seq)),
  );
  const deps: ReceiveStreamDeps = { nats: ctx.nats, mailboxes, receivers: ctx.layout.buckets.receivers, log: ctx.log, now: Date.now };
  const device = { accountId: `acct${randomBytes(6).toString("hex")}`, deviceId: 1 };
  const stream = new ReceiveStream(deps, device, `stream-${randomBytes(4).toString("hex")}`, 0, window);
  const hub = new ReceiveHub(ctx.nats, Date.now);
  hub.add(stream);
  const abort = new AbortController();
  const it = stream.run(abort.signal);
  onTestFinished(async () => {
    abort.abort();
    await it.return(undefined);
    hub.close();
  });
  expect((await nextEvent(it)).event.case).toBe("drained");
  counted.reads = 0;
  const loc = real.locate(device);
  let n = 0;
  // The Ack RPC served here, its JetStream operations counted: one purge, or one delete per sequence.
  const { mailboxes: acking, ops } = countingAckOps(real);
  const acker = new Acker(acking, hub, defaultLimits);
  const caller = { accountId: device.accountId, deviceId: device.deviceId } as AuthenticatedDevice;
  return {
    stream,
    counted,
    ops,
    /** The client's Ack, served by this instance. */
    ackRpc: (seqs: number[]) => acker.ack(caller, seqs.map(BigInt)),
    /** Stores a record (`bodyBytes` of body); returns its sequence and the record (offer it for this instance's own Send). */
    store: async (bodyBytes = 0) => {
      const record = senderRecord(n++, bodyBytes);
      return { seq: (await real.append(loc, record, randomBytes(11).toString("hex"))).seq, record };
    },
    /** The hint another instance's Send publishes for mail it stored (the sequence only). */
    hint: (seq: number) => real.signal(device, { kind: "mail", seq }),
    /** The client acks: the mail is deleted, then the stream hears of it (as the Ack RPC does). */
    ack: async (seq: number) => {
      await real.delete(loc.stream, seq);
      stream.acked([seq]);
    },
    nextSequence: async () => {
      const ev = await nextEvent(it);
      return ev.event.case === "message" ? Number(ev.event.value.sequence) : undefined;
    },
  };
}

describe("live push under load", () => {
  it("a record offered while the window is full waits in memory and goes out when an ack frees room: no read", async () => {
    const s = await openStream(2);
    const a = await s.store();
    const b = await s.store();
    s.stream.offer(a.seq, a.record);
    s.stream.offer(b.seq, b.record);
    expect(await s.nextSequence()).toBe(a.seq);
    expect(await s.nextSequence()).toBe(b.seq);
    // Window full (two delivered, none acked) when the third is stored.
    const c = await s.store();
    s.stream.offer(c.seq, c.record);
    await s.ack(a.seq);
    expect(await s.nextSequence()).toBe(c.seq);
    expect(s.counted.reads).toBe(0);
  });

  it("a record offered during a read pass goes out by push when the pass ends at the head: no second pass", async () => {
    const s = await openStream(16);
    let offered = 0;
    // The pass's read has found nothing after the cursor; before the stream sees that answer,
    // a Send of this instance stores a message and offers it.
    s.counted.afterRead = async () => {
      s.counted.afterRead = undefined;
      const m = await s.store();
      offered = m.seq;
      s.stream.offer(m.seq, m.record);
    };
    const next = s.nextSequence();
    s.stream.wake(); // a hint without a sequence: read
    expect(await next).toBe(offered);
    expect(s.counted.reads).toBe(1);
  });

  it("mail offered during a read pass that stops at a full window is not pushed ahead of the mail the pass left unread", async () => {
    const s = await openStream(2);
    // Three messages whose hints never reached the stream, found by a read.
    const unseen = [await s.store(), await s.store(), await s.store()];
    let offered = 0;
    s.counted.afterRead = async () => {
      s.counted.afterRead = undefined;
      const m = await s.store();
      offered = m.seq;
      s.stream.offer(m.seq, m.record);
    };
    const first = s.nextSequence();
    s.stream.wake();
    expect(await first).toBe(unseen[0].seq);
    expect(await s.nextSequence()).toBe(unseen[1].seq);
    // The client asks for more: the window is full, so the pass stops with the third unread
    // (the offered one queued) and the stream waits for an ack.
    const third = s.nextSequence();
    await new Promise((r) => setImmediate(r));
    await s.ack(unseen[0].seq);
    expect(await third).toBe(unseen[2].seq);
    await s.ack(unseen[1].seq);
    expect(await s.nextSequence()).toBe(offered);
  });

  it("an Ack during a read pass purges past records the pass delivered while they were also queued for push", async () => {
    const s = await openStream(16);
    // Mail whose first read answer comes back as this instance's own Sends are offered.
    const mail = [await s.store(), await s.store(), await s.store()];
    s.counted.afterRead = async () => {
      s.counted.afterRead = undefined;
      s.stream.offer(mail[0].seq, mail[0].record);
      s.stream.offer(mail[1].seq, mail[1].record);
    };
    const first = s.nextSequence();
    s.stream.wake();
    expect(await first).toBe(mail[0].seq);
    expect(await s.nextSequence()).toBe(mail[1].seq);
    expect(await s.nextSequence()).toBe(mail[2].seq);
    // The pass is still running (the stream waits for its client): the first two are still in
    // its push queue, delivered by the read all the same.
    expect((await s.ackRpc([mail[0].seq])).deleted).toBe(1);
    expect((await s.ackRpc([mail[1].seq, mail[2].seq])).deleted).toBe(2);
    expect(s.ops).toMatchObject({ purges: 2, deletes: 0 });
  });

  it("while a lagging client's stream drops records it cannot queue, an Ack of delivered mail is still one purge", async () => {
    const s = await openStream(4);
    const mail = [];
    for (let i = 0; i < 9; i++) mail.push(await s.store());
    // Nine offered at once: four fit the push queue (a window's worth), five are dropped and
    // read later. The first four are delivered and fill the window.
    for (const m of mail) s.stream.offer(m.seq, m.record);
    for (const m of mail.slice(0, 4)) expect(await s.nextSequence()).toBe(m.seq);
    expect((await s.ackRpc(mail.slice(0, 4).map((m) => m.seq))).deleted).toBe(4);
    expect(s.ops).toMatchObject({ purges: 1, deletes: 0 });
    // The rest in order, once the window has room again.
    for (const m of mail.slice(4, 8)) expect(await s.nextSequence()).toBe(m.seq);
    await s.ackRpc(mail.slice(4, 8).map((m) => m.seq));
    expect(await s.nextSequence()).toBe(mail[8].seq);
  });

  it("the push queue holds at most 1 MiB of records: what does not fit is read later, in order", async () => {
    const s = await openStream(2);
    const mail = [];
    for (let i = 0; i < 4; i++) mail.push(await s.store(300 * 1024));
    // Three fit (900 KiB); the fourth would pass 1 MiB and is left to a read.
    for (const m of mail) s.stream.offer(m.seq, m.record);
    for (const m of mail) {
      expect(await s.nextSequence()).toBe(m.seq);
      await s.ackRpc([m.seq]);
    }
    expect(s.counted.reads).toBeGreaterThan(0);
  });

  it("a hint for mail of another instance while the push queue is full costs no get: a read sends it, in order", async () => {
    const s = await openStream(2);
    const mail = [];
    for (let i = 0; i < 8; i++) mail.push(await s.store());
    // The client has not asked for more: all eight wait in the queue (four windows: full).
    for (const m of mail) s.stream.offer(m.seq, m.record);
    const woken = vi.spyOn(s.stream, "wake");
    const elsewhere = await s.store();
    s.hint(elsewhere.seq);
    await vi.waitFor(() => expect(woken).toHaveBeenCalled(), { timeout: 5000 });
    expect(s.counted.gets).toBe(0);
    for (const m of [...mail, elsewhere]) {
      expect(await s.nextSequence()).toBe(m.seq);
      await s.ackRpc([m.seq]);
    }
  });

  it("the push queue holds four windows of records: a client that lags by that much still gets them by push", async () => {
    const s = await openStream(2);
    const mail = [];
    for (let i = 0; i < 8; i++) mail.push(await s.store());
    for (const m of mail) s.stream.offer(m.seq, m.record);
    for (const m of mail) {
      expect(await s.nextSequence()).toBe(m.seq);
      await s.ackRpc([m.seq]);
    }
    expect(s.counted.reads).toBe(0);
  });
});
