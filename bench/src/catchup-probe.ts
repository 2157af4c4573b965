/**
 * How a backlog is best read from JetStream on this nats-server: direct gets next_by_subj one
 * at a time (through the server's coalesced publisher) vs batches from a short-lived pull
 * consumer (server/src/nats/batch-reads.ts), 64 devices at a time, for several backlog sizes,
 * each pair interleaved twice. The crossover sets SINGLE_READS in delivery/mailbox-reader.ts.
 *
 *   npm run probe:catchup [-- devices pending [pending ...]]
 *
 * Runs on the 2-core box (nats-server 2.9.10), 200 devices, batches / direct gets in
 * devices/s: 10 pending x0.85-0.94; 50 pending x1.25-1.5; 200 pending x1.8-2.4.
 */
import { startTestNats } from "@sealpost/test-support";
import { BatchReads, connectNats } from "@sealpost/server/nats";

const CONCURRENCY = 64;
const devices = Number(process.argv[2] ?? 200);
const backlogs = process.argv.length > 3 ? process.argv.slice(3).map(Number) : [10, 50, 200];

const nats = await startTestNats({ forceOwn: true });
const n = await connectNats(nats.url, "catchup-probe");
await n.jsm.streams.add({ name: "PROBE", subjects: ["probe.>"], allow_direct: true } as never);
const batches = new BatchReads(n.nc, n.publisher);

async function fill(pending: number): Promise<void> {
  await n.jsm.streams.purge("PROBE");
  const data = new Uint8Array(1024);
  for (let k = 0; k < pending; k++) await Promise.all(Array.from({ length: devices }, (_, d) => n.publisher.publish(`probe.d${d}`, data)));
}

async function direct(d: number): Promise<number> {
  let cursor = 0;
  let read = 0;
  for (;;) {
    const m = await n.publisher.directGet("PROBE", { next_by_subj: `probe.d${d}`, seq: cursor + 1 });
    if (!m) return read;
    cursor = m.seq;
    read++;
  }
}

async function batched(d: number): Promise<number> {
  let cursor = 0;
  let read = 0;
  for (;;) {
    const b = await batches.read("PROBE", `probe.d${d}`, cursor, 256);
    read += b.msgs.length;
    if (b.msgs.length) cursor = b.msgs[b.msgs.length - 1].seq;
    if (!b.more) return read;
  }
}

async function rate(read: (d: number) => Promise<number>, pending: number): Promise<number> {
  await fill(pending);
  let next = 0;
  let total = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let d = next++; d < devices; d = next++) {
        const got = await read(d);
        total += got;
      }
    }),
  );
  if (total !== devices * pending) throw new Error(`read ${total} messages, expected ${devices * pending}`);
  return (devices * 1000) / (performance.now() - start);
}

for (const pending of backlogs) {
  const d: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < 2; i++) {
    d.push(await rate(direct, pending));
    b.push(await rate(batched, pending));
  }
  const avg = (xs: number[]) => Math.round(xs.reduce((x, y) => x + y, 0) / xs.length);
  console.log(`${pending} pending: direct gets ${avg(d)} devices/s, batches ${avg(b)} devices/s (x${(avg(b) / avg(d)).toFixed(2)})`);
}
batches.close();
await n.nc.close();
await nats.stop();
