/**
 * Probe: reading a device's backlog on nats-server 2.9 — direct gets next_by_subj one at a
 * time vs an ephemeral push consumer per device (one create, N pushed messages, one delete).
 */
import { connect } from "@nats-io/transport-node";
import { createInbox, type Msg } from "@nats-io/nats-core";
import { jetstreamManager, jetstream } from "@nats-io/jetstream";
import { startTestNats } from "@sealpost/test-support/index.js";

const DEVICES = Number(process.argv[2] ?? 500);
const PENDING = Number(process.argv[3] ?? 10);
const CONC = 64;
const nats = await startTestNats();
const nc = await connect({ servers: nats.url, noAsyncTraces: true });
const jsm = await jetstreamManager(nc);
const js = jetstream(nc);
await jsm.streams.add({ name: "P", subjects: ["p.>"], storage: "file" as never, duplicate_window: 120e9, allow_direct: true } as never);
const te = new TextEncoder();
const td = new TextDecoder();
const data = new Uint8Array(1024).fill(1);
async function fill() {
  const jobs: Promise<unknown>[] = [];
  for (let k = 0; k < PENDING; k++) for (let d = 0; d < DEVICES; d++) jobs.push(js.publish(`p.d${d}`, data));
  await Promise.all(jobs);
}
function req(subject: string, body: unknown): Promise<any> {
  return nc.request(subject, te.encode(JSON.stringify(body)), { timeout: 5000 }).then((m) => (m.data.length ? JSON.parse(td.decode(m.data)) : {}));
}
async function direct(d: number): Promise<number> {
  let cursor = 0, n = 0;
  for (;;) {
    const m = await nc.request(`$JS.API.DIRECT.GET.P`, te.encode(JSON.stringify({ next_by_subj: `p.d${d}`, seq: cursor + 1 })), { timeout: 5000 });
    if (m.headers?.code === 404 || !m.headers?.get("Nats-Sequence")) break;
    cursor = Number(m.headers.get("Nats-Sequence"));
    n++;
  }
  return n;
}
async function consumer(d: number): Promise<number> {
  const inbox = createInbox();
  let got = 0;
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  let expected = -1;
  const sub = nc.subscribe(inbox, {
    callback: (_e, m: Msg) => {
      got++;
      // reply: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
      const parts = m.reply!.split(".");
      if (parts[parts.length - 1] === "0") resolve();
    },
  });
  const r = await req(`$JS.API.CONSUMER.CREATE.P`, { stream_name: "P", config: { deliver_subject: inbox, filter_subject: `p.d${d}`, deliver_policy: "all", ack_policy: "none", inactive_threshold: 5e9, mem_storage: true, num_replicas: 1 } });
  expected = r.num_pending ?? 0;
  if (r.error) throw new Error(JSON.stringify(r.error));
  if (expected > 0) await done;
  sub.unsubscribe();
  nc.publish(`$JS.API.CONSUMER.DELETE.P.${r.name}`);
  return got;
}
async function run(name: string, f: (d: number) => Promise<number>) {
  await jsm.streams.purge("P");
  await fill();
  let next = 0, msgs = 0;
  const t = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: CONC }, async () => { for (let d = next++; d < DEVICES; d = next++) { const n = await f(d); msgs += n; } }));
  const ms = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  console.log(`${name}: ${(DEVICES * 1000 / ms).toFixed(0)} dev/s, ${msgs} msgs, client cpu ${((cpu.user + cpu.system) / 1000 / ms * 100).toFixed(0)}%`);
}
for (let i = 0; i < 2; i++) { await run("direct next_by_subj", direct); await run("push consumer", consumer); }
await nc.close();
await nats.stop();
