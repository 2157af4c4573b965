/**
 * A 3-node (or N-node) nats-server cluster with JetStream on loopback for fault tests: fixed
 * client and route ports picked up front (so a restarted node comes back where clients and
 * peers expect it), one store directory per node, node-level stop / start / SIGKILL, and
 * lookups of the JetStream meta leader and of a stream's leader.
 *
 *   const cluster = await startNatsCluster();          // 3 nodes, waits for a meta leader
 *   const server = await startTestServer(cluster.url, { replicas: 3 });
 *   await cluster.restart(await cluster.streamLeaderIndex("SP_MAILBOX_0"));
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startEmbeddedNats, type EmbeddedNats } from "@sealpost/server/nats";

export interface NatsClusterNode {
  name: string;
  clientPort: number;
  routePort: number;
  /** HTTP monitoring port (/jsz reports the meta leader). */
  monitorPort: number;
  dataDir: string;
  url: string;
  /** The running process, undefined while stopped. */
  running?: EmbeddedNats;
}

export interface NatsCluster {
  /** Every node's client URL, comma-separated (what NATS_URL takes). */
  url: string;
  nodes: NatsClusterNode[];
  /** Graceful stop of one node (SIGTERM; the store stays). */
  stop(i: number): Promise<void>;
  /** kill -9 of one node: no shutdown, no flush (the OS keeps written pages). */
  kill(i: number): Promise<void>;
  /** Starts a stopped node again on its ports with its store. */
  start(i: number): Promise<void>;
  restart(i: number): Promise<void>;
  /** Node index of the JetStream meta leader. */
  metaLeaderIndex(): Promise<number>;
  /** Node index of a stream's (or KV bucket's, "KV_<name>") leader. */
  streamLeaderIndex(stream: string): Promise<number>;
  /**
   * Each running node's own view of a stream (its replica's state, from /jsz), to check that
   * the replicas of an R3 stream hold the same sequence range and count.
   */
  replicaStates(stream: string): Promise<ReplicaState[]>;
  /**
   * replicaStates until every running node answered and all agree, at most `attempts` reads
   * 500 ms apart (a replica that was just restarted may still be catching up).
   */
  settledReplicaStates(stream: string, attempts: number): Promise<{ states: ReplicaState[]; agree: boolean }>;
  /** Resolves once every running node agrees on a meta leader and JetStream answers. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Stops every node and deletes the stores. */
  close(): Promise<void>;
}

export interface ReplicaState {
  node: string;
  /** Undefined when the node has no replica of the stream (or did not answer). */
  messages?: number;
  firstSeq?: number;
  lastSeq?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A port that was free a moment ago (loopback only). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startNatsCluster(opts: { size?: number; name?: string; freePort?: () => Promise<number> } = {}): Promise<NatsCluster> {
  const portFor = opts.freePort ?? freePort;
  const size = opts.size ?? 3;
  const clusterName = opts.name ?? "sealpost-test";
  const root = await mkdtemp(join(tmpdir(), "sealpost-cluster-"));
  const nodes: NatsClusterNode[] = [];
  /** Ports for every node, free a moment ago (the first start checks they still were). */
  const pickPorts = async () => {
    nodes.length = 0;
    for (let i = 0; i < size; i++) {
      const clientPort = await portFor();
      const routePort = await portFor();
      const monitorPort = await portFor();
      nodes.push({ name: `n${i + 1}`, clientPort, routePort, monitorPort, dataDir: join(root, `n${i + 1}`), url: `nats://127.0.0.1:${clientPort}` });
    }
  };

  const start = async (i: number) => {
    const n = nodes[i];
    if (n.running) return;
    const routes = nodes.map((m) => `nats-route://127.0.0.1:${m.routePort}`);
    n.running = await startEmbeddedNats({
      dataDir: n.dataDir,
      port: n.clientPort,
      // Lets the soak run against another nats-server build than the one on PATH.
      bin: process.env.SEALPOST_NATS_SERVER_BIN,
      serverName: n.name,
      extraConfig: [
        `http: "127.0.0.1:${n.monitorPort}"`,
        `cluster {`,
        `  name: ${JSON.stringify(clusterName)}`,
        `  listen: "127.0.0.1:${n.routePort}"`,
        `  routes: [${routes
          .filter((_, j) => j !== i)
          .map((r) => JSON.stringify(r))
          .join(", ")}]`,
        `}`,
      ].join("\n"),
    });
  };
  const stop = async (i: number) => {
    const r = nodes[i].running;
    nodes[i].running = undefined;
    await r?.stop();
  };
  const kill = async (i: number) => {
    const r = nodes[i].running;
    nodes[i].running = undefined;
    if (!r) return;
    const exited = new Promise<void>((done) => (r.process.exitCode !== null || r.process.signalCode !== null ? done() : r.process.once("exit", () => done())));
    if (r.process.pid) process.kill(r.process.pid, "SIGKILL");
    await exited;
    await r.stop(); // clears the exit hook and pid file
  };

  /** Stream info from any running node (cluster.leader names the stream's leader). */
  const streamCluster = async (stream: string): Promise<{ leader?: string }> => {
    const nc = await connect({ servers: nodes.filter((n) => n.running).map((n) => n.url), maxReconnectAttempts: 0, timeout: 2000 });
    try {
      const jsm = await jetstreamManager(nc, { timeout: 2000 });
      return (await jsm.streams.info(stream)).cluster ?? {};
    } finally {
      await nc.close();
    }
  };

  /** The meta leader as every running node reports it on its monitoring port (/jsz). */
  const metaLeader = async (): Promise<string> => {
    const leaders = await Promise.all(
      nodes
        .filter((n) => n.running)
        .map(async (n) => {
          const res = await fetch(`http://127.0.0.1:${n.monitorPort}/jsz`, { signal: AbortSignal.timeout(2000) });
          const jsz = (await res.json()) as { meta_cluster?: { leader?: string } };
          return jsz.meta_cluster?.leader ?? "";
        }),
    );
    if (!leaders[0] || leaders.some((l) => l !== leaders[0])) throw new Error(`no agreed meta leader yet (${JSON.stringify(leaders)})`);
    return leaders[0];
  };

  const replicaStates = (stream: string): Promise<ReplicaState[]> =>
    Promise.all(
      nodes
        .filter((n) => n.running)
        .map(async (n): Promise<ReplicaState> => {
          try {
            const res = await fetch(`http://127.0.0.1:${n.monitorPort}/jsz?streams=true`, { signal: AbortSignal.timeout(2000) });
            const jsz = (await res.json()) as {
              account_details?: { stream_detail?: { name: string; state: { messages: number; first_seq: number; last_seq: number } }[] }[];
            };
            const st = jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((d) => d.name === stream)?.state;
            return { node: n.name, messages: st?.messages, firstSeq: st?.first_seq, lastSeq: st?.last_seq };
          } catch {
            return { node: n.name };
          }
        }),
    );

  const settledReplicaStates = async (stream: string, attempts: number) => {
    // (An empty stream's first sequence is reported as 0 or last+1 depending on its history.)
    const same = (x: ReplicaState, y: ReplicaState) => x.messages === y.messages && x.lastSeq === y.lastSeq && (x.messages === 0 || x.firstSeq === y.firstSeq);
    // Every node must have answered: no data is not agreement.
    const agreeing = (states: ReplicaState[]) =>
      states.length === nodes.filter((n) => n.running).length && states.every((s) => s.messages !== undefined && same(s, states[0]));
    let states = await replicaStates(stream);
    for (let t = 1; t < attempts && !agreeing(states); t++) {
      await sleep(500);
      states = await replicaStates(stream);
    }
    return { states, agree: agreeing(states) };
  };

  const waitReady = async (timeoutMs = 30_000) => {
    const end = Date.now() + timeoutMs;
    let last: unknown;
    for (let delay = 100; Date.now() < end; delay = Math.min(delay * 2, 1000)) {
      try {
        await metaLeader();
        // "JetStream system temporarily unavailable" until the leader serves the API.
        const nc = await connect({ servers: nodes.filter((n) => n.running).map((n) => n.url), maxReconnectAttempts: 0, timeout: 2000 });
        try {
          await (await jetstreamManager(nc, { timeout: 2000 })).getAccountInfo();
        } finally {
          await nc.close();
        }
        return;
      } catch (err) {
        last = err;
        await sleep(delay);
      }
    }
    throw new Error(`JetStream cluster not ready after ${timeoutMs} ms: ${String(last)}`);
  };

  const indexOf = (name: string | undefined) => {
    const i = nodes.findIndex((n) => n.name === name);
    if (i < 0) throw new Error(`no leader known (${String(name)})`);
    return i;
  };

  for (let attempt = 1; ; attempt++) {
    await pickPorts();
    try {
      // Start all at once: a JetStream node waits for its peers before it serves. Every start
      // settles before a failure is handled, so no node is still starting (and writing to its
      // store) when the cleanup below stops the others and deletes the stores.
      const started = await Promise.allSettled(nodes.map((_, i) => start(i)));
      const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      await waitReady();
      break;
    } catch (err) {
      await Promise.all(nodes.map((_, i) => stop(i)));
      // Another process (tests run in parallel) can take a port between freePort() and the
      // node's bind: start the whole cluster again on new ports, with empty stores.
      if (attempt < 3 && /address already in use/i.test(String(err))) {
        await Promise.all(nodes.map((n) => rm(n.dataDir, { recursive: true, force: true })));
        continue;
      }
      await rm(root, { recursive: true, force: true });
      throw err;
    }
  }

  return {
    url: nodes.map((n) => n.url).join(","),
    nodes,
    stop,
    kill,
    start,
    restart: async (i) => {
      await stop(i);
      await start(i);
    },
    // Right after a restart a node may not know the leader yet: ask again until all agree (bounded).
    metaLeaderIndex: async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          return indexOf(await metaLeader());
        } catch (err) {
          if (attempt >= 60) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    },
    streamLeaderIndex: async (stream) => indexOf((await streamCluster(stream)).leader),
    replicaStates,
    settledReplicaStates,
    waitReady,
    close: async () => {
      await Promise.all(nodes.map((_, i) => stop(i)));
      await rm(root, { recursive: true, force: true });
    },
  };
}
