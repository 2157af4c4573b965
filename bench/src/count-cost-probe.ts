/**
 * What the Ack's count check costs nats-server beside a delete, by the number of subjects in
 * the stream (delivery/ack.ts SUBJECTS_PER_DELETE is set from this). On a nats-server started
 * here: one stream, mail for ever more distinct subjects (one message each, as devices with
 * mail in a partition), then 200 stream infos with an account-wide subject filter (the count
 * check's request) and 800 message deletes, nats-server CPU from /proc (10 ms ticks: read the
 * shape, not the digits).
 *
 *   npm run probe:count
 */
import { startTestNats } from "@sealpost/test-support";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { cpuSeconds } from "./proc-cpu.js";

const COUNTS = 200;
const DELETES = 800;
const n = await startTestNats({ forceOwn: true });
const nc = await connect({ servers: n.url });
try {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "P", subjects: ["m.>"] });
  const js = jetstream(nc);
  const enc = (o: unknown) => JSON.stringify(o);
  for (const subjects of [100, 1000, 5000, 20000, 60000]) {
    const have = (await jsm.streams.info("P")).state.num_subjects ?? 0;
    let pending: Promise<unknown>[] = [];
    for (let i = have; i < subjects; i++) {
      pending.push(js.publish(`m.p.a${i % 50}.${i}`, new Uint8Array(100)));
      if (pending.length >= 500) {
        await Promise.all(pending);
        pending = [];
      }
    }
    await Promise.all(pending);
    const last = (await jsm.streams.info("P")).state.last_seq;
    let c0 = cpuSeconds(n.pid);
    for (let i = 0; i < COUNTS; i++) await nc.request("$JS.API.STREAM.INFO.P", enc({ subjects_filter: `m.p.a${i % 50}.*` }));
    const countUs = ((cpuSeconds(n.pid) - c0) / COUNTS) * 1e6;
    c0 = cpuSeconds(n.pid);
    const seqs = Array.from({ length: DELETES }, (_, i) => last - DELETES + i + 1);
    for (let i = 0; i < seqs.length; i += 8) {
      await Promise.all(seqs.slice(i, i + 8).map((seq) => nc.request("$JS.API.STREAM.MSG.DELETE.P", enc({ seq, no_erase: true }))));
    }
    const deleteUs = ((cpuSeconds(n.pid) - c0) / DELETES) * 1e6;
    console.log(
      `${subjects} subjects: count ${countUs.toFixed(0)} us, delete ${deleteUs.toFixed(0)} us of nats-server CPU; a count costs ${(countUs / deleteUs).toFixed(1)} deletes`,
    );
  }
} finally {
  await nc.close();
  await n.stop();
}
