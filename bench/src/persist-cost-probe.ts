/**
 * What each JetStream operation of a routed message costs nats-server, measured apart from
 * sealpost's server: the server's own streams and publisher (ensureLayout, JetStreamPublisher)
 * on a nats-server started here, driven as a Send and an Ack drive them. Phases, interleaved
 * over rounds (this box is shared and noisy; medians of the rounds are reported):
 *
 *   store            one mailbox publish per message (1 KiB, Nats-Msg-Id, expected stream)
 *   store+outcome    plus the Send's outcome record (a KV create in sp_sends, ~40 bytes)
 *   store+ack        plus one purge of a device's acked prefix per `--ack-batch` messages
 *   all              the three together, as the Session load runs them
 *   store+delete     plus one message delete per message (the ack of mail a purge cannot take)
 *   store+api-info   plus one trivial JetStream API request ($JS.API.INFO) per message: what
 *                    any API request costs before its own work
 *
 * nats-server's and this process's CPU per message come from /proc (utime + stime).
 *
 *   npm run probe:persist [-- --messages 20000 --rounds 5 --ack-batch 6]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bucketNames, connectNats, ensureLayout, mailboxPartition, mailboxSubject, mailboxStreamName, startEmbeddedNats } from "@sealpost/server/nats";
import { cpuSeconds } from "./proc-cpu.js";
import { median } from "./result.js";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    rounds: { type: "string", default: "5" },
    "ack-batch": { type: "string", default: "6" },
    devices: { type: "string", default: "8" },
    window: { type: "string", default: "256" },
  },
});
const MESSAGES = Number(values.messages);
const ROUNDS = Number(values.rounds);
const ACK_BATCH = Number(values["ack-batch"]);
const DEVICES = Number(values.devices);
const WINDOW = Number(values.window);

type Phase = "store" | "store+outcome" | "store+ack" | "all" | "store+delete" | "store+api-info";
const PHASES: Phase[] = ["store", "store+outcome", "store+ack", "all", "store+delete", "store+api-info"];

const dir = await mkdtemp(join(tmpdir(), "sealpost-persist-probe-"));
const nats = await startEmbeddedNats({ dataDir: dir });
const conn = await connectNats(nats.url, "persist-probe");
try {
  const layout = await ensureLayout(conn.jsm, conn.kvm, 1, 1);
  const partitions = layout.partitions;
  const record = new Uint8Array(1024).fill(7);
  const outcome = new Uint8Array(40).fill(3);
  // Each device's mailbox subject and stream, as the server locates them.
  const devices = Array.from({ length: DEVICES }, (_, i) => ({
    subject: mailboxSubject(`acct${i}`, 1, partitions),
    stream: mailboxStreamName(mailboxPartition(`acct${i}`, 1, partitions)),
  }));
  let serial = 0;

  const run = async (phase: Phase): Promise<{ serverUs: number; clientUs: number; msgPerS: number }> => {
    const withOutcome = phase === "store+outcome" || phase === "all";
    const withAck = phase === "store+ack" || phase === "all";
    const unacked = devices.map(() => [] as number[]);
    const serverBefore = cpuSeconds(nats.process.pid);
    const clientBefore = process.cpuUsage();
    const start = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < MESSAGES) {
        const i = next++;
        const d = i % DEVICES;
        const id = `m${serial++}`;
        const { subject, stream } = devices[d];
        const ack = await conn.publisher.publish(subject, record, { msgId: id, expectStream: stream });
        if (withOutcome) conn.publisher.publishUnconfirmed(`$KV.${bucketNames.sends}.${id}`, outcome, { expectLastSubjectSeq: 0 });
        if (phase === "store+delete") await conn.publisher.api(`$JS.API.STREAM.MSG.DELETE.${stream}`, { seq: ack.seq, no_erase: true });
        if (phase === "store+api-info") await conn.publisher.api("$JS.API.INFO", {});
        if (withAck) {
          const q = unacked[d];
          q.push(ack.seq);
          if (q.length >= ACK_BATCH) {
            const below = Math.max(...q) + 1;
            q.length = 0;
            await conn.publisher.api(`$JS.API.STREAM.PURGE.${stream}`, { filter: subject, seq: below });
          }
        }
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, worker));
    await conn.publisher.flushed();
    const seconds = (performance.now() - start) / 1000;
    const client = process.cpuUsage(clientBefore);
    return {
      serverUs: ((cpuSeconds(nats.process.pid) - serverBefore) * 1e6) / MESSAGES,
      clientUs: (client.user + client.system) / MESSAGES,
      msgPerS: MESSAGES / seconds,
    };
  };

  const results = new Map<Phase, { serverUs: number; clientUs: number; msgPerS: number }[]>(PHASES.map((p) => [p, []]));
  await run("all"); // warm-up: streams, JIT
  for (let r = 0; r < ROUNDS; r++) {
    for (const phase of r % 2 ? [...PHASES].reverse() : PHASES) {
      results.get(phase)!.push(await run(phase));
      for (let p = 0; p < partitions; p++) await conn.jsm.streams.purge(mailboxStreamName(p));
      await conn.jsm.streams.purge(`KV_${bucketNames.sends}`);
    }
  }
  console.log(`nats-server ${nats.version}, ${MESSAGES} messages x ${ROUNDS} rounds, ${DEVICES} devices, ${WINDOW} in flight, purge per ${ACK_BATCH} messages`);
  console.log("phase            nats-server us/msg  probe us/msg  msg/s");
  for (const phase of PHASES) {
    const rs = results.get(phase)!;
    console.log(
      `${phase.padEnd(16)} ${median(rs.map((x) => x.serverUs))
        .toFixed(1)
        .padStart(18)}  ${median(rs.map((x) => x.clientUs))
        .toFixed(1)
        .padStart(12)}  ${Math.round(median(rs.map((x) => x.msgPerS)))
        .toString()
        .padStart(6)}`,
    );
  }
} finally {
  await conn.nc.drain().catch(() => conn.nc.close());
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
}
