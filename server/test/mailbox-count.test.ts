/**
 * Mailboxes.countStored (the Ack's count check) against the mailbox stream's own per-subject
 * totals in the same state, while other devices' mail is stored and purged, on a real
 * nats-server.
 *
 * Regression: counted with a literal `subjects_filter`, nats-server 2.9.10 answered with no
 * subjects at all in most such checks after subject-filtered purges with publishes in flight
 * (a scratch probe: 2,869 of 3,000), while the device had mail. The count check then failed
 * and every Ack of live-pushed mail went as one delete per sequence (in the Session bench,
 * 6-45% of count checks). A filter for the account's devices (`<p>.<account>.*`) counts right.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestNats, type TestNats } from "@sealpost/test-support";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { ensureLayout } from "../src/nats/layout.js";
import { Mailboxes } from "../src/delivery/mailbox.js";

let nats: TestNats;
let conn: Nats;

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  conn = await connectNats(nats.url, "mailbox-count-test");
  await ensureLayout(conn.jsm, conn.kvm, 1, 1);
});
afterAll(async () => {
  await conn?.nc.close();
  await nats?.stop();
});

it("counts a device's mail right while other mail is stored and devices' acked mail is purged", async () => {
  const mailboxes = new Mailboxes(conn, 1);
  const devices = Array.from({ length: 8 }, (_, i) => ({ accountId: `acct${i}`, deviceId: 1 }));
  const locs = devices.map((d) => mailboxes.locate(d));
  const body = new Uint8Array(1100);
  let storing = true;
  // As a busy instance does: mail stored for every device, each device's acked prefix purged.
  const stored = (async () => {
    for (let i = 0; storing; ) {
      const acks = await Promise.all(Array.from({ length: 256 }, () => mailboxes.append(locs[i % 8], body, `m${i++}`)));
      const last = acks.at(-1)!.seq;
      if (i % 3 === 0) for (const d of devices) await mailboxes.purgeBelow(d, last - 400);
    }
  })();
  let compared = 0;
  let wrong = 0;
  try {
    for (let n = 0; n < 600; n++) {
      const d = devices[n % 8];
      const [mine, all] = await Promise.all([
        mailboxes.countStored(d),
        conn.publisher.api<{ state: { last_seq: number; subjects?: Record<string, number> } }>(`$JS.API.STREAM.INFO.${locs[0].stream}`, {
          subjects_filter: ">",
        }),
      ]);
      if (mine.lastSeq !== all.state.last_seq) continue; // not the same state
      compared++;
      if (mine.count !== (all.state.subjects?.[locs[n % 8].subject] ?? 0)) wrong++;
    }
  } finally {
    storing = false;
    await stored;
  }
  expect(compared).toBeGreaterThan(100);
  expect(wrong).toBe(0);
}, 60_000);
