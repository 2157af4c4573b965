/**
 * What reading one device's mail costs nats-server when that mail is spread over a mailbox
 * stream among other devices' mail (as mail for an offline device is), by read method:
 * direct gets next_by_subj from a cursor (how delivery/mailbox-reader.ts reads), a one-batch
 * pull consumer (nats/batch-reads.ts), and direct gets by sequence (what a reader that knew
 * the sequences could do). nats-server CPU per device from /proc, 64 devices at a time.
 *
 *   npm run probe:spread [-- background-messages [background-subjects]]
 *
 * The background is other devices' mail: by default one subject per message (many devices
 * with little mail each, as in a mailbox partition); a second argument puts it on that many
 * subjects instead. On the 2-core box (nats-server 2.9.10, 3,000 devices x 10 messages among
 * 150k others, ~200 MB in one stream): next_by_subj 1.6-2.6 ms per device (~190 us a hop), a
 * batch 1.7-1.9 ms, by sequence 0.08-0.18 ms. With the background on 20 subjects the hops
 * cost ~45 us each: a lookup's work grows with the distinct subjects in the blocks it passes.
 * Reading the device's messages by sequence first (so their blocks are cached) did not make
 * the hops cheaper.
 */
import { startTestNats } from "@sealpost/test-support";
import { BatchReads, connectNats } from "@sealpost/server/nats";
import { cpuSeconds } from "./proc-cpu.js";

const DEVICES = 3000;
const PENDING = 10;
const CONCURRENCY = 64;
const background = Number(process.argv[2] ?? 150_000);
/** 0: one subject per background message. */
const backgroundSubjects = Number(process.argv[3] ?? 0);

const nats = await startTestNats({ forceOwn: true });
const n = await connectNats(nats.url, "spread-read-probe");
await n.jsm.streams.add({ name: "PROBE", subjects: ["probe.>"], allow_direct: true } as never);
const batches = new BatchReads(n.nc, n.publisher);
const data = new Uint8Array(1024);
const sequences = new Map<number, number[]>();

/** Many workers over `count` jobs. */
async function each(count: number, job: (i: number) => Promise<void>, workers = 128): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let i = next++; i < count; i = next++) await job(i);
    }),
  );
}

// One message per device per round, a share of the background before each round.
for (let round = 0; round < PENDING; round++) {
  await each(background / PENDING, (i) =>
    n.publisher.publish(backgroundSubjects ? `probe.other.${i % backgroundSubjects}` : `probe.other.${round}.${i}`, data).then(() => {}),
  );
  await each(DEVICES, async (d) => {
    const ack = await n.publisher.publish(`probe.d${d}`, data);
    (sequences.get(d) ?? sequences.set(d, []).get(d)!).push(ack.seq);
  });
}
const state = (await n.jsm.streams.info("PROBE")).state;
console.log(
  `stream: ${state.messages} messages on ${state.num_subjects} subjects, ${(state.bytes / 1e6).toFixed(0)} MB; ${DEVICES} devices x ${PENDING} spread over it`,
);

async function perDevice(name: string, first: number, count: number, read: (d: number) => Promise<number>): Promise<void> {
  const cpu0 = cpuSeconds(nats.pid);
  await each(
    count,
    async (i) => {
      const got = await read(first + i);
      if (got !== PENDING) throw new Error(`${name}: device ${first + i} read ${got} of ${PENDING}`);
    },
    CONCURRENCY,
  );
  console.log(`${name.padEnd(44)} ${(((cpuSeconds(nats.pid) - cpu0) * 1e6) / count).toFixed(0).padStart(6)} us nats-server CPU per device`);
}

const third = DEVICES / 3;
await perDevice("direct gets next_by_subj (11, the last empty)", 0, third, async (d) => {
  let cursor = 0;
  let got = 0;
  for (;;) {
    const m = await n.publisher.directGet("PROBE", { next_by_subj: `probe.d${d}`, seq: cursor + 1 });
    if (!m) return got;
    cursor = m.seq;
    got++;
  }
});
await perDevice("one-batch pull consumer", third, third, async (d) => (await batches.read("PROBE", `probe.d${d}`, 0, PENDING)).msgs.length);
await perDevice("direct gets by sequence (10, pipelined)", 2 * third, third, async (d) => {
  const got = await Promise.all(sequences.get(d)!.map((seq) => n.publisher.directGet("PROBE", { seq })));
  return got.filter(Boolean).length;
});

batches.close();
await n.nc.close();
await nats.stop();
