/**
 * On replicated streams a direct get may come from a lagging or diverged replica, so every
 * read goes to the stream leader (STREAM.MSG.GET). This checks that replicated Mailboxes never
 * use direct gets, that the leader query finds exactly the next message of the device's
 * subject, skips other devices' mail and deleted (acked) messages and answers null at the
 * end, and that replicated KV buckets are switched to leader gets too.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, type TestNats } from "@sealpost/test-support";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { ensureLayout } from "../src/nats/layout.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { Bucket } from "@nats-io/kv";
import { leaderReadsFor } from "../src/nats/stream-reads.js";
import { BODY_STREAM, bodySubject } from "../src/nats/layout.js";

let nats: TestNats;
let conn: Nats;
beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  conn = await connectNats(nats.url);
  await ensureLayout(conn.jsm, conn.kvm, 4, 1);
});
afterAll(async () => {
  await conn?.nc.close();
  await nats?.stop();
});

describe("mailbox reads on replicated streams", () => {
  it("reads replicated streams from the leader only, which finds the next message of the subject only", async () => {
    // Direct gets that answer "nothing", as a lagging replica would, and that count their use.
    let directGets = 0;
    const staleReads = new Proxy(conn.jsm, {
      get: (target, prop) =>
        prop === "direct"
          ? {
              getMessage: async (): Promise<StoredMsg | null> => {
                directGets++;
                return null;
              },
            }
          : (target as unknown as Record<string | symbol, unknown>)[prop],
    }) as JetStreamManager;
    const replicated = new Mailboxes(conn, 4, staleReads, true);
    const unreplicated = new Mailboxes(conn, 4, staleReads, false);
    const me = replicated.locate({ accountId: "leaderread", deviceId: 1 });
    const other = replicated.locate({ accountId: "leaderread", deviceId: 2 });

    const a = await replicated.append(me, new Uint8Array([1]), "lr-a");
    await conn.js.publish(other.subject, new Uint8Array([9]));
    const b = await replicated.append(me, new Uint8Array([2]), "lr-b");
    const c = await replicated.append(me, new Uint8Array([3]), "lr-c");
    await replicated.delete(me.stream, b.seq);
    await conn.js.publish(bodySubject("lr-body"), new Uint8Array([7, 7]), { expect: { streamName: BODY_STREAM } });

    expect((await replicated.next(me, 0))?.seq).toBe(a.seq);
    expect((await replicated.next(me, a.seq))?.seq).toBe(c.seq); // skips the other device and the acked one
    expect(await replicated.next(me, c.seq)).toBeNull();
    expect((await replicated.bySeq(me.stream, c.seq))?.data).toEqual(new Uint8Array([3]));
    expect(await replicated.bySeq(me.stream, b.seq)).toBeNull();
    expect(await replicated.getBody("lr-body")).toEqual(new Uint8Array([7, 7]));
    expect(directGets).toBe(0);
    // A single replica keeps direct gets (here: the stale stand-in's "nothing").
    expect(await unreplicated.next(me, 0)).toBeNull();
    expect(directGets).toBe(1);
  });

  it("switches replicated KV buckets to leader gets and leaves single-replica ones alone", async () => {
    const kv = await conn.kvm.create("sp_leader_read_test", { history: 1 });
    expect(kv).toBeInstanceOf(Bucket);
    expect((kv as Bucket).direct).toBe(true);
    leaderReadsFor(kv, false);
    expect((kv as Bucket).direct).toBe(true);
    leaderReadsFor(kv, true);
    expect((kv as Bucket).direct).toBe(false);
    await kv.put("k", new Uint8Array([1]));
    await kv.delete("k");
    expect((await kv.get("k"))?.operation).toBe("DEL");
    expect(await kv.get("missing")).toBeNull();
  });
});
