/**
 * The composition root of one server instance: NATS (embedded or external), the JetStream
 * layout, the services, and one port serving Connect, gRPC and gRPC-Web. Stateless: all
 * state lives in JetStream, so any number of instances can share one NATS cluster.
 */
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { invalidArgumentOnDecodeFailure } from "./parse-errors.js";
import { nativeDelivery } from "./delivery/native-delivery.js";
import { noMetrics, PrometheusMetrics, type Metrics } from "./observability/metrics.js";
import { listenMetrics, withMetricsEndpoint } from "./observability/metrics-endpoint.js";
import { noTracing, startTracing } from "./observability/tracing.js";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@sealpost/gen/grpc/health/v1/health_pb.js";
import { DirectoryService, file_sealpost_directory_v1_directory_service } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { DeliveryService, file_sealpost_delivery_v1_delivery_service } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { file_grpc_health_v1_health } from "@sealpost/gen/grpc/health/v1/health_pb.js";
import { ServerReflection, file_grpc_reflection_v1_reflection } from "@sealpost/gen/grpc/reflection/v1/reflection_pb.js";
import { reflectionService } from "./reflection/reflection-service.js";
import { metricsListener, type ServerConfig } from "./config.js";
import { clusterMetrics, isWorker } from "./workers.js";
import { createLogger, type Logger } from "./logger.js";
import { natsOrEmbedded, replicasDedupeConsistently, type EmbeddedNats } from "./nats/embedded-server.js";
import { connectNats, whenJetStreamReady } from "./nats/connection.js";
import { ensureLayout } from "./nats/layout.js";
import { loadTokenSecret } from "./auth/token-secret.js";
import { TokenSigner } from "./auth/tokens.js";
import { Authenticator } from "./auth/authenticator.js";
import { HealthStatus, healthService } from "./health/health-service.js";
import { listenOnePort, type RequestHandler } from "./one-port.js";
import { withCors } from "./cors.js";
import { withPreAuthGate } from "./auth/pre-auth-gate.js";
import { callLogInterceptor } from "./interceptors.js";
import { callerContextValues } from "./caller-address.js";
import { createDirectory, type DirectoryOptions } from "./directory/service.js";
import { createDelivery, type DeliveryOptions } from "./delivery/service.js";
import type { ServerContext } from "./server-context.js";

/** Largest request message: a Send with a 256 KiB body and 1000 entries of up to 4 KiB. */
export const READ_MAX_BYTES = 5 * 1024 * 1024;
/** Every other Delivery request: at most an attachment chunk (256 KiB) and its fields. */
export const DELIVERY_READ_MAX_BYTES = 512 * 1024;
/** Directory requests: a 16 KiB device list, 100 one-time prekeys, an ML-KEM key: tens of KiB. */
export const DIRECTORY_READ_MAX_BYTES = 256 * 1024;
/** Health and reflection. */
const SMALL_READ_MAX_BYTES = 64 * 1024;
/** Larger than any message we write, so no response is ever compressed. */
const RESPONSE_COMPRESS_MIN_BYTES = 2 * READ_MAX_BYTES;

export interface RunningServer {
  port: number;
  /** http://host:port */
  url: string;
  natsUrl: string;
  context: ServerContext;
  /** The admin listener's port with `--metrics host:port` (undefined otherwise). */
  metricsPort?: number;
  /** Drains streams, closes the port and NATS, stops an embedded nats-server. Idempotent. */
  close(): Promise<void>;
}

export interface ServerDeps {
  log?: Logger;
  now?: () => number;
  random?: (n: number) => Uint8Array;
  /** Directory limits (tests lower the rate limits). */
  directory?: DirectoryOptions;
  /** Delivery limits and intervals (tests and benchmarks raise sends_per_minute). */
  delivery?: DeliveryOptions;
  /** Export traces here instead of --otlp-endpoint (tests: an in-memory exporter). */
  spanExporter?: SpanExporter;
}

export async function startServer(config: ServerConfig, deps: ServerDeps = {}): Promise<RunningServer> {
  const log = deps.log ?? createLogger(config.logLevel);
  const now = deps.now ?? Date.now;
  const random = deps.random ?? ((n: number) => new Uint8Array(randomBytes(n)));

  const { natsUrl, embedded } = await natsOrEmbedded(config, log);
  const nats = await connectNats(natsUrl);
  try {
    warnAboutDurability(log, config, nats.serverVersion, embedded);
    const layout = await whenJetStreamReady(() => ensureLayout(nats.jsm, nats.kvm, config.mailboxPartitions, config.replicas));
    const tokens = new TokenSigner(await whenJetStreamReady(() => loadTokenSecret(layout.buckets.config, config.tokenSecret)), now);
    const shutdown = new AbortController();
    // Every open call (each Receive stream) links its signal to this one until it ends;
    // thousands at once are normal, not the leak Node's default limit of 10 warns about.
    setMaxListeners(0, shutdown.signal);
    let openStreams = () => 0;
    // Kept by watchNatsStatus: while NATS is gone, calls that need it fail at once.
    let natsUp = true;
    const storeUp = () => natsUp;
    const prometheus = config.metrics === "off" ? undefined : new PrometheusMetrics(() => openStreams());
    const metrics = prometheus ?? noMetrics;
    metrics.natsConnected(true);
    nats.publisher.onRoundTrip = prometheus ? (op, s) => metrics.natsRequest(op, s) : undefined;
    const tracing = deps.spanExporter || config.otlpEndpoint ? await startTracing({ endpoint: config.otlpEndpoint, exporter: deps.spanExporter }) : noTracing;
    if (tracing.enabled) nats.publisher.traceRoundTrip = (op) => tracing.natsRoundTrip(op);
    const context: ServerContext = { config, log, nats, layout, tokens, now, random, shutdownSignal: shutdown.signal, metrics, tracing };

    const directory = await createDirectory(context, {
      certificateKeyVersion: config.certificateKeyVersion,
      ...deps.directory,
      limits: {
        accountsPerAddressPerHour: config.accountsPerAddressPerHour,
        oneTimePrekeysPerDevicePerMinute: config.oneTimePrekeysPerDevicePerMinute,
        ...deps.directory?.limits,
      },
    });
    const auth = new Authenticator(tokens, directory.deviceStatus);
    const delivery = await createDelivery(context, auth, directory, deps.delivery);
    openStreams = () => delivery.openStreams;
    const health = new HealthStatus([DirectoryService.typeName, DeliveryService.typeName]);

    const handler = connectNodeAdapter({
      routes: (router) => {
        // Read limits per method family, applied after decompression too: a request (or a gzip
        // bomb) larger than its method could ever need is refused before it is parsed.
        router.service(Health, healthService(health), { readMaxBytes: SMALL_READ_MAX_BYTES });
        router.service(DirectoryService, directory.impl, { readMaxBytes: DIRECTORY_READ_MAX_BYTES });
        const { send, sendSealed, session, ...deliveryRest } = delivery.impl;
        router.service(DeliveryService, deliveryRest, { readMaxBytes: DELIVERY_READ_MAX_BYTES });
        // Send, SendSealed (and Session, which carries Sends) take a whole maximal Send.
        if (send) router.rpc(DeliveryService.method.send, send.bind(delivery.impl), { readMaxBytes: READ_MAX_BYTES });
        if (sendSealed) router.rpc(DeliveryService.method.sendSealed, sendSealed.bind(delivery.impl), { readMaxBytes: READ_MAX_BYTES });
        if (session) router.rpc(DeliveryService.method.session, session.bind(delivery.impl), { readMaxBytes: READ_MAX_BYTES });
        router.service(
          ServerReflection,
          reflectionService(
            [
              file_sealpost_directory_v1_directory_service,
              file_sealpost_delivery_v1_delivery_service,
              file_grpc_health_v1_health,
              file_grpc_reflection_v1_reflection,
            ],
            [DirectoryService.typeName, DeliveryService.typeName, Health.typeName, ServerReflection.typeName],
          ),
          { readMaxBytes: SMALL_READ_MAX_BYTES },
        );
        // The adapter takes its handlers from this array once routes() returns.
        router.handlers.forEach((h, i) => (router.handlers[i] = invalidArgumentOnDecodeFailure(h, log)));
      },
      interceptors: [callLogInterceptor(log, now, metrics, tracing, storeUp)],
      contextValues: callerContextValues,
      readMaxBytes: READ_MAX_BYTES,
      writeMaxBytes: READ_MAX_BYTES,
      // Never compress responses: everything sealpost sends is ciphertext (incompressible),
      // and gzip of every Receive message cost ~5% of the server's CPU and as much again in
      // each client (bench/ANALYSIS.md). Compressed requests are still accepted.
      compressMinBytes: RESPONSE_COMPRESS_MIN_BYTES,
      shutdownSignal: shutdown.signal,
    });
    // With --workers, /metrics (on any worker) answers for all of them.
    const metricsSource = prometheus && (isWorker() ? clusterMetrics(prometheus.registry) : prometheus.registry);
    const withMetricsOnPort = (h: RequestHandler) => (metricsSource && config.metrics === "same" ? withMetricsEndpoint(h, metricsSource) : h);
    const server = await listenOnePort({
      host: config.host,
      port: config.port,
      // /metrics (when on this port), CORS (preflights, headers on every answer), then no
      // work before authentication.
      handler: withMetricsOnPort(withCors(withPreAuthGate(handler, tokens))),
      // The calls on every message's path, on the HTTP/2 stream itself (CORS headers and the
      // token check as above, before the body is read).
      native: nativeDelivery({
        token: (authorization) => auth.bearer(authorization),
        listed: (token) => auth.listed(token),
        mailbox: delivery.mailbox,
        session: delivery.session,
        send: delivery.send,
        ack: delivery.ack,
        sendSealed: delivery.sendSealed,
        receiveReadMaxBytes: DELIVERY_READ_MAX_BYTES,
        sessionReadMaxBytes: READ_MAX_BYTES,
        sendReadMaxBytes: READ_MAX_BYTES,
        ackReadMaxBytes: DELIVERY_READ_MAX_BYTES,
        log,
        now,
        metrics,
        tracing,
        storeUp,
        shutdownSignal: shutdown.signal,
      }),
      tls: config.tlsCert ? { certPath: config.tlsCert, keyPath: config.tlsKey } : undefined,
      maxConnectionsPerAddress: config.maxConnectionsPerAddress,
      // The Session's request body is the client's stream of sends: no body deadline.
      streamingRequest: (path) => path === `/${DeliveryService.typeName}/${DeliveryService.method.session.name}`,
    });
    const admin = metricsSource && metricsListener(config.metrics);
    const metricsServer = admin ? await listenMetrics(admin.host, admin.port, metricsSource) : undefined;
    health.setAll(Status.SERVING);
    watchNatsStatus(nats, health, log, metrics, (up) => (natsUp = up));
    const scheme = config.tlsCert ? "https" : "http";
    log.info("listening", { url: `${scheme}://${config.host}:${server.port}`, protocols: "connect,grpc,grpc-web", nats: natsUrl });

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        health.setAll(Status.NOT_SERVING);
        shutdown.abort();
        await server.close(config.shutdownGraceSeconds * 1000);
        await metricsServer?.close();
        await delivery.close();
        await directory.close();
        await nats.nc.drain().catch(() => nats.nc.close());
        await embedded?.stop();
        await tracing.shutdown();
        log.info("stopped");
      })());
    return { port: server.port, url: `${scheme}://${config.host}:${server.port}`, natsUrl, context, metricsPort: metricsServer?.port, close };
  } catch (err) {
    await nats.nc.close().catch(() => {});
    await embedded?.stop();
    throw err;
  }
}

function warnAboutDurability(log: Logger, config: ServerConfig, version: string, embedded?: EmbeddedNats): void {
  if (config.replicas > 1) {
    if (!replicasDedupeConsistently(version)) {
      log.warn(
        "replicated JetStream on a nats-server before 2.10.14: after a node restart, a retried Send can leave the replicas of a mailbox stream holding different messages at the same sequences (messages then lost or delivered twice). Use nats-server >= 2.10.14 for replicas > 1; `npm run probe:nats` shows it; see docs/OPERATIONS.md",
        { natsVersion: version },
      );
    }
    return;
  }
  if (embedded?.syncAlways) return;
  log.warn(
    "running JetStream with 1 replica and without sync_interval: always; a power loss (not a process crash) can lose acknowledged messages. Use R3 in production, see docs/OPERATIONS.md",
    { natsVersion: version },
  );
}

/** Mirrors NATS connectivity into health so balancers route around an instance that lost NATS. */
function watchNatsStatus(nats: ServerContext["nats"], health: HealthStatus, log: Logger, metrics: Metrics, setUp: (up: boolean) => void): void {
  void (async () => {
    for await (const s of nats.nc.status()) {
      if (s.type === "disconnect") {
        log.warn("nats disconnected");
        health.setAll(Status.NOT_SERVING);
        metrics.natsConnected(false);
        setUp(false);
      } else if (s.type === "reconnect") {
        log.info("nats reconnected");
        health.setAll(Status.SERVING);
        metrics.natsConnected(true);
        setUp(true);
      }
    }
  })().catch(() => {});
}
