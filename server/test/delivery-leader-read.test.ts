/**
 * On replicated streams a direct get may come from a lagging replica, so Mailboxes confirms
 * "nothing more" with the stream leader (STREAM.MSG.GET with next_by_subj). This checks the
 * leader query finds exactly the next message of the device's subject, skips other devices'
 * mail and deleted (acked) messages, and answers null at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, type TestNats } from "@sealpost/test-support/index.js";
import { connectNats, type Nats } from "@sealpost/server/nats/connection.js";
import { ensureLayout } from "@sealpost/server/nats/layout.js";
import { Mailboxes } from "@sealpost/server/delivery/mailbox.js";
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";

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
  it("confirms an empty direct get with the leader, which finds the next message of the subject only", async () => {
    // A direct-get path that always answers "nothing", as a lagging replica would.
    const staleReads = new Proxy(conn.jsm, {
      get: (target, prop) =>
        prop === "direct" ? { getMessage: async (): Promise<StoredMsg | null> => null } : (target as unknown as Record<string | symbol, unknown>)[prop],
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

    expect((await replicated.next(me, 0))?.seq).toBe(a.seq);
    expect((await replicated.next(me, a.seq))?.seq).toBe(c.seq); // skips the other device and the acked one
    expect(await replicated.next(me, c.seq)).toBeNull();
    // Without the confirmation a stale replica's "nothing" would end the backlog early.
    expect(await unreplicated.next(me, 0)).toBeNull();
  });
});
