/**
 * Does this nats-server build keep the replicas of an R3 stream identical when a message id
 * is published again after its message was deleted and a replica restarted? No sealpost code
 * in the path: a 3-node cluster on loopback, raw JetStream.
 *
 *   npm run probe:nats                                  # the nats-server on PATH
 *   SEALPOST_NATS_SERVER_BIN=/path/to/nats-server npm run probe:nats
 *
 * What sealpost does that meets it: a Send retried with the same message_id republishes its
 * entries with the same Nats-Msg-Id; the receiver may have acked (deleted) the first copy.
 * Before nats-server 2.10.14 every replica decides "duplicate?" on its own at apply time, and
 * a restarted replica rebuilds that memory only from messages it still stores: the leader
 * drops the republished message, the restarted replica stores it, and from then on the two
 * hold different messages at the same sequences (reads, PubAcks and deletes disagree).
 * Exits 1 when the replicas diverge, 2 when a node's state could not be read.
 */
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startNatsCluster } from "@sealpost/test-support";
import { natsServerVersion } from "@sealpost/server/nats";

const IDS = 50;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const version = await natsServerVersion(process.env.SEALPOST_NATS_SERVER_BIN ?? "nats-server");
const cluster = await startNatsCluster({ name: "dedupe-probe" });
const nc = await connect({ servers: cluster.url.split(","), maxReconnectAttempts: -1, reconnectTimeWait: 100 });
let diverged = false;
try {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc, { timeout: 5000 });
  await jsm.streams.add({ name: "PROBE", subjects: ["probe"], num_replicas: 3, duplicate_window: 120_000_000_000 });
  for (let i = 0; i < IDS; i++) {
    const ack = await js.publish("probe", new Uint8Array(8), { msgID: `id-${i}` });
    await jsm.streams.deleteMessage("PROBE", ack.seq, false);
  }
  const leader = await cluster.streamLeaderIndex("PROBE");
  const follower = (leader + 1) % cluster.nodes.length;
  await cluster.restart(follower);
  await cluster.waitReady();
  await sleep(2000); // let the restarted replica catch up
  let duplicates = 0;
  for (let i = 0; i < IDS; i++) if ((await js.publish("probe", new Uint8Array(8), { msgID: `id-${i}` })).duplicate) duplicates++;
  await js.publish("probe", new Uint8Array(8), { msgID: "fresh" });
  const { states, agree } = await cluster.settledReplicaStates("PROBE", 21);
  const answered = states.length === cluster.nodes.length && states.every((s) => s.messages !== undefined);
  if (!answered) {
    console.log(`nats-server ${version}: no stream state from every node (/jsz): ${JSON.stringify(states)}`);
    process.exitCode = 2;
  }
  diverged = answered && !agree;
  console.log(`nats-server ${version}: ${IDS} message ids republished after their messages were deleted and replica ${cluster.nodes[follower].name} restarted`);
  console.log(`  the leader answered ${duplicates} of them as duplicates`);
  for (const s of states) console.log(`  ${s.node}: ${s.messages} messages, last sequence ${s.lastSeq}`);
  console.log(diverged ? "  DIVERGED: the replicas hold different messages at the same sequences (use nats-server >= 2.10.14 for R3)" : "  consistent");
} finally {
  await nc.close();
  await cluster.close();
}
process.exit(diverged ? 1 : (process.exitCode ?? 0));
