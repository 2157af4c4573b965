/**
 * Prometheus metrics of one server instance (prom-client, text format at /metrics).
 * Names follow Prometheus conventions (base units, `_total` for counters). Labels carry only
 * bounded, non-identifying values (method, protocol, code, limit, kind, op): never an account
 * id, a device id, a token or an address (cardinality and privacy; a test scrapes after
 * real traffic and looks for every id it used).
 *
 * The hot path calls these a few times per message. prom-client's inc/observe with labels
 * cost about a microsecond each, so the histograms observed per call, per NATS round trip and
 * per delivered message are BucketHistograms (same exposition, ~0.05 us an observation), and
 * the count of calls is read from the call histogram at scrape time (the bench measures the
 * whole: `metrics_overhead`).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { BucketHistogram } from "./bucket-histogram.js";

export type Protocol = "connect" | "grpc" | "grpc-web";

/** What the services report; `noMetrics` when metrics are off. */
export interface Metrics {
  /** One finished call: its method ("Send"), protocol, code name ("ok", "invalid_argument"...) and duration. */
  call(method: string, protocol: Protocol, code: string, seconds: number): void;
  /** A Send accepted for storing, with this many entries (devices). */
  sendFanout(devices: number): void;
  /** Records appended to mailboxes. */
  appended(n: number): void;
  /** A message sent on a stream straight from a Send on this instance (no read). */
  livePushed(): void;
  /** A message sent on a stream after a read of the mailbox (catch-up, or a hint from elsewhere). */
  read(): void;
  /** Mail that arrived while its stream was open went out this long after the Send stored it. */
  liveDeliveryLag(seconds: number): void;
  /** Messages deleted by Acks. */
  acked(n: number): void;
  /** A call refused by a rate limit or admission control, by limit name. */
  rejected(limit: string): void;
  /** A Session stream opened (+1) or closed (-1). */
  sessions(delta: number): void;
  /** NATS connectivity. */
  natsConnected(up: boolean): void;
  /** One NATS request/reply (a JetStream publish and its PubAck, an API call, a direct get). */
  natsRequest(op: "publish" | "api" | "get", seconds: number): void;
  /** A KV watch event applied this long after it was stored. */
  watchLag(seconds: number): void;
}

export const noMetrics: Metrics = {
  call() {},
  sendFanout() {},
  appended() {},
  livePushed() {},
  read() {},
  liveDeliveryLag() {},
  acked() {},
  rejected() {},
  sessions() {},
  natsConnected() {},
  natsRequest() {},
  watchLag() {},
};

/** Latency buckets (seconds) from 0.25 ms to 10 s: unary calls and NATS round trips. */
const LATENCY_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export class PrometheusMetrics implements Metrics {
  readonly registry = new Registry();
  private readonly callSeconds: BucketHistogram;
  private readonly fanout: Histogram;
  private readonly appends: Counter;
  private readonly pushes: Counter;
  private readonly reads: Counter;
  private readonly acks: Counter;
  private readonly rejections: Counter<"limit">;
  private readonly openSessions: Gauge;
  private readonly connected: Gauge;
  private readonly natsSeconds: BucketHistogram;
  private readonly lag: Histogram;
  private readonly deliveryLag: BucketHistogram;

  /** `openMailboxStreams`: read at scrape time (Receive streams and Session mailboxes open here). */
  constructor(openMailboxStreams: () => number) {
    const registers = [this.registry];
    const callSeconds = new BucketHistogram(
      "sealpost_rpc_duration_seconds",
      "RPC duration by method, protocol and status code (streams: their whole life).",
      [...LATENCY_BUCKETS, 60, 600, 3600],
      ["method", "protocol", "code"],
      this.registry,
    );
    this.callSeconds = callSeconds;
    // The same calls counted: each series' count of the duration histogram.
    const requests = { name: "sealpost_rpc_requests_total", help: "Finished RPCs by method, protocol and status code.", type: "counter", aggregator: "sum" };
    this.registry.registerMetric({
      ...requests,
      get: async () => ({ ...requests, values: callSeconds.counts().map((c) => ({ labels: { ...c.labels }, value: c.count })) }),
    } as never);
    this.fanout = new Histogram({
      name: "sealpost_send_fanout_devices",
      help: "Entries (recipient devices) per accepted Send.",
      buckets: [1, 2, 3, 5, 8, 16, 32, 64, 128, 256, 1000],
      registers,
    });
    this.appends = new Counter({ name: "sealpost_mailbox_appends_total", help: "Records appended to device mailboxes.", registers });
    this.pushes = new Counter({
      name: "sealpost_live_pushes_total",
      help: "Messages sent on a stream straight from a Send on this instance, without a read.",
      registers,
    });
    this.reads = new Counter({
      name: "sealpost_mailbox_reads_total",
      help: "Messages sent on a stream after reading them from the mailbox (catch-up, hints from other instances).",
      registers,
    });
    this.acks = new Counter({ name: "sealpost_acked_messages_total", help: "Mailbox messages deleted by Acks.", registers });
    this.rejections = new Counter({
      name: "sealpost_rate_limit_rejections_total",
      help: "Calls refused by a rate limit or by admission control, by limit.",
      labelNames: ["limit"],
      registers,
    });
    this.openSessions = new Gauge({ name: "sealpost_open_sessions", help: "Session streams open on this instance.", registers });
    new Gauge({
      name: "sealpost_open_mailbox_streams",
      help: "Mailbox streams (Receive, and the mailbox of a Session) open on this instance.",
      registers,
      collect() {
        this.set(openMailboxStreams());
      },
    });
    this.connected = new Gauge({ name: "sealpost_nats_connected", help: "1 while this instance is connected to NATS.", registers });
    this.natsSeconds = new BucketHistogram(
      "sealpost_nats_request_duration_seconds",
      "NATS request/reply round trips by operation.",
      LATENCY_BUCKETS,
      ["op"],
      this.registry,
    );
    this.lag = new Histogram({
      name: "sealpost_kv_watch_lag_seconds",
      help: "Time from a KV change (device lists) being stored to this instance applying it.",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    });
    this.deliveryLag = new BucketHistogram(
      "sealpost_live_delivery_lag_seconds",
      "From a Send storing a message to the recipient's open stream sending it (live push or hint; catch-up of older mail not counted).",
      LATENCY_BUCKETS,
      [],
      this.registry,
    );
    collectDefaultMetrics({ register: this.registry });
  }

  call(method: string, protocol: Protocol, code: string, seconds: number): void {
    this.callSeconds.observe(seconds, method, protocol, code);
  }
  sendFanout(devices: number): void {
    this.fanout.observe(devices);
  }
  appended(n: number): void {
    this.appends.inc(n);
  }
  livePushed(): void {
    this.pushes.inc();
  }
  read(): void {
    this.reads.inc();
  }
  liveDeliveryLag(seconds: number): void {
    this.deliveryLag.observe(Math.max(0, seconds));
  }
  acked(n: number): void {
    if (n > 0) this.acks.inc(n);
  }
  rejected(limit: string): void {
    this.rejections.inc({ limit });
  }
  sessions(delta: number): void {
    this.openSessions.inc(delta);
  }
  natsConnected(up: boolean): void {
    this.connected.set(up ? 1 : 0);
  }
  natsRequest(op: "publish" | "api" | "get", seconds: number): void {
    this.natsSeconds.observe(seconds, op);
  }
  watchLag(seconds: number): void {
    this.lag.observe(Math.max(0, seconds));
  }
}

/** The protocol of a request from its content type (for calls through connect-node). */
export function protocolOf(contentType: string | null | undefined): Protocol {
  const t = contentType ?? "";
  if (t.startsWith("application/grpc-web")) return "grpc-web";
  if (t.startsWith("application/grpc")) return "grpc";
  return "connect";
}
