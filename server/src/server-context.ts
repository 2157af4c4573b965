/**
 * What every service of one server instance shares. Clock and randomness are injected so
 * tests can be deterministic.
 */
import type { ServerConfig } from "./config.js";
import type { Logger } from "./logger.js";
import type { Nats } from "./nats/connection.js";
import type { Layout } from "./nats/layout.js";
import type { TokenSigner } from "./auth/tokens.js";
import type { Metrics } from "./observability/metrics.js";
import type { Tracing } from "./observability/tracing.js";

export interface ServerContext {
  config: ServerConfig;
  log: Logger;
  nats: Nats;
  layout: Layout;
  tokens: TokenSigner;
  /** Milliseconds since the Unix epoch. */
  now: () => number;
  /** Cryptographically secure random bytes. */
  random: (n: number) => Uint8Array;
  /** Aborted when the instance shuts down; long-lived streams end on it. */
  shutdownSignal: AbortSignal;
  /** Prometheus metrics (noMetrics when off). */
  metrics: Metrics;
  /** OpenTelemetry traces (noTracing when off). */
  tracing: Tracing;
}
