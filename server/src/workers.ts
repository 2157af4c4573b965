/**
 * `--workers N`: N server processes behind one port (node:cluster). Node's event loop runs
 * JavaScript on one core; instances are stateless, so more of them on one machine use more
 * cores without a proxy in front. The primary process accepts each connection and hands it to
 * a worker (round robin); a connection stays on its worker for its whole life, so a Receive
 * or Session stream costs the primary nothing after the handshake.
 *
 * Each worker is a full instance (its own NATS connection, streams and caches), exactly as
 * instances on separate machines are: everything they share lives in JetStream. The primary
 * serves no calls. It starts the embedded nats-server when NATS_URL is unset (the workers
 * connect to it), restarts a worker that dies, answers the workers' /metrics with every
 * worker's metrics added up, and on SIGTERM/SIGINT lets every worker drain and stop, then
 * stops nats-server.
 */
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import type { ServerConfig } from "./config.js";
import type { Logger } from "./logger.js";
import { natsOrEmbedded } from "./nats/embedded-server.js";
import type { MetricsSource } from "./observability/metrics-endpoint.js";

/**
 * A worker that dies after it was listening is replaced, unless this many died within
 * RESTART_WINDOW_MS (a crash loop: the server stops and says why). One that dies before it
 * was listening stops the server at once (a port in use, NATS unreachable: it would only die
 * again).
 */
export const MAX_RESTARTS = 5;
export const RESTART_WINDOW_MS = 60_000;
const METRICS_REQUEST = "sealpost:metrics";
const METRICS_ANSWER = "sealpost:metrics-answer";
/** How long a worker waits for the primary's aggregated metrics. */
const METRICS_TIMEOUT_MS = 5_000;

/**
 * The primary: starts `config.workers` workers and supervises them until a signal; the exit
 * code (0 after a clean stop, 1 when a worker could not start).
 */
export async function runPrimary(config: ServerConfig, log: Logger): Promise<number> {
  const { natsUrl, embedded } = await natsOrEmbedded(config, log);
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  let failure: string | undefined;
  const listening = new Set<Worker>();
  const fork = () => {
    const w = cluster.fork({ NATS_URL: natsUrl });
    w.on("message", (m: { type?: string; id?: number }) => {
      if (m?.type !== METRICS_REQUEST) return;
      // A worker gone meanwhile cannot be answered; the callback keeps that from throwing here.
      const answer = (a: { text?: string; error?: string }) => w.isConnected() && w.send({ type: METRICS_ANSWER, id: m.id, ...a }, undefined, () => {});
      aggregator.clusterMetrics().then(
        (text) => answer({ text }),
        (err: Error) => answer({ error: err.message }),
      );
    });
    w.once("listening", (address) => {
      listening.add(w);
      if (listening.size === config.workers)
        log.info("workers listening", { workers: config.workers, port: address.port, pids: [...listening].map((x) => x.process.pid) });
    });
  };

  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const stop = (reason?: string) => {
    if (stopping) return;
    stopping = true;
    failure = reason;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
    if (!Object.keys(cluster.workers ?? {}).length) done();
  };
  const restarts: number[] = [];
  cluster.on("exit", (w, code, signal) => {
    const wasListening = listening.delete(w);
    if (stopping) {
      if (!Object.keys(cluster.workers ?? {}).length) done();
      return;
    }
    if (!wasListening) {
      log.error("worker exited before it was listening; stopping", { pid: w.process.pid, code, signal });
      stop(`a worker exited before it was listening (code ${code}, signal ${signal})`);
      return;
    }
    const now = Date.now();
    restarts.push(now);
    while (restarts.length && restarts[0] < now - RESTART_WINDOW_MS) restarts.shift();
    if (restarts.length > MAX_RESTARTS) {
      log.error("workers keep exiting; stopping", { restarts: restarts.length, windowMs: RESTART_WINDOW_MS });
      stop(`${restarts.length} workers exited within ${RESTART_WINDOW_MS / 1000} s`);
      return;
    }
    log.error("worker exited; starting another", { pid: w.process.pid, code, signal });
    fork();
  });
  process.once("SIGINT", () => stop());
  process.once("SIGTERM", () => stop());
  for (let i = 0; i < config.workers; i++) fork();
  await finished;
  await embedded?.stop();
  if (failure) {
    process.stderr.write(`sealpost-server: ${failure}; see the log above\n`);
    return 1;
  }
  log.info("stopped");
  return 0;
}

/**
 * In a worker: every worker's metrics added up, from the primary. The worker's own registry
 * is what it contributes when the primary asks.
 */
export function clusterMetrics(own: Registry): MetricsSource {
  AggregatorRegistry.setRegistries([own]);
  // Constructing one installs prom-client's answer to the primary's requests in this worker.
  new AggregatorRegistry();
  let next = 0;
  const waiting = new Map<number, { resolve(text: string): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  process.on("message", (m: { type?: string; id?: number; text?: string; error?: string }) => {
    if (m?.type !== METRICS_ANSWER || m.id === undefined) return;
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    clearTimeout(w.timer);
    if (m.error !== undefined) w.reject(new Error(`metrics of the other workers: ${m.error}`));
    else w.resolve(m.text ?? "");
  });
  return {
    contentType: own.contentType,
    metrics: () =>
      new Promise<string>((resolve, reject) => {
        const id = next++;
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error("no answer from the primary process"));
        }, METRICS_TIMEOUT_MS);
        waiting.set(id, { resolve, reject, timer });
        process.send?.({ type: METRICS_REQUEST, id });
      }),
  };
}

/** True in a process the primary forked. */
export const isWorker = () => cluster.isWorker;

/** In a worker: its number (1..), for its log lines. */
export const workerId = () => cluster.worker?.id;
