/**
 * One NATS connection per server instance, with the JetStream handles every service uses.
 */
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { JetStreamPublisher } from "./publisher.js";

export interface Nats {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kvm: Kvm;
  /** Hot-path JetStream publishes (core publish + PubAck collector, see publisher.ts). */
  publisher: JetStreamPublisher;
  /** nats-server version reported by the server we are connected to. */
  serverVersion: string;
}

/** How long start-up waits for JetStream (a cluster electing its meta leader) before failing. */
const JETSTREAM_READY_MS = 60_000;

/**
 * The JetStream API answers only once the cluster has a meta leader: for seconds after a
 * node restart it times out or says "temporarily unavailable". Start-up steps (the API
 * handshake, creating streams and buckets, the shared secret) run through this, so an
 * instance started then waits (bounded) instead of exiting. Every step is idempotent.
 */
export async function whenJetStreamReady<T>(step: () => Promise<T>, readyMs = JETSTREAM_READY_MS): Promise<T> {
  const end = Date.now() + readyMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await step();
    } catch (err) {
      const transient = /timeout|temporarily unavailable|no responders/i.test(String((err as Error)?.message ?? err));
      if (!transient || Date.now() + delay > end) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export async function connectNats(servers: string, name = "sealpost-server"): Promise<Nats> {
  const nc = await connect({
    servers: servers
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    name,
    // Keep retrying through NATS restarts and cluster failovers; requests fail fast meanwhile.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 10_000,
    // Each request otherwise builds two Error objects (with stack traces) up front, in case
    // it fails: ~9% of the server's CPU under load (bench/ANALYSIS.md). Failures still carry
    // their message and code, only not the caller's async stack.
    noAsyncTraces: true,
  });
  const jsm = await whenJetStreamReady(() => jetstreamManager(nc, { timeout: 10_000 }));
  const js = jetstream(nc, { timeout: 10_000 });
  const publisher = new JetStreamPublisher(nc);
  void nc.closed().then(() => publisher.close());
  return { nc, js, jsm, kvm: new Kvm(js), publisher, serverVersion: nc.info?.version ?? "unknown" };
}
