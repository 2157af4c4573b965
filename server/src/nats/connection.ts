/**
 * One NATS connection per server instance, with the JetStream handles every service uses.
 */
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";

export interface Nats {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kvm: Kvm;
  /** nats-server version reported by the server we are connected to. */
  serverVersion: string;
}

export async function connectNats(servers: string, name = "sealpost-server"): Promise<Nats> {
  const nc = await connect({
    servers: servers.split(",").map((s) => s.trim()).filter(Boolean),
    name,
    // Keep retrying through NATS restarts and cluster failovers; requests fail fast meanwhile.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 10_000,
  });
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  const js = jetstream(nc, { timeout: 10_000 });
  return { nc, js, jsm, kvm: new Kvm(js), serverVersion: nc.info?.version ?? "unknown" };
}
