/**
 * Server configuration from environment variables, overridden by command-line flags.
 * Every option has one env var and one flag; `--help` prints them all.
 */
import { parseArgs } from "node:util";
import type { LogLevel } from "./logger.js";

export interface ServerConfig {
  /** Address to listen on. */
  host: string;
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** NATS servers (comma-separated); empty starts an embedded nats-server child. */
  natsUrl: string;
  /** Store directory of the embedded nats-server. */
  dataDir: string;
  /** nats-server binary for the embedded default. */
  natsServerBin: string;
  /** JetStream replicas for streams and buckets (1 standalone, 3 in a cluster). */
  replicas: number;
  /**
   * Number of mailbox streams a device is hashed onto, fixed for the life of a deployment;
   * 0: the deployment's count as stored in NATS (NEW_DEPLOYMENT_PARTITIONS for a new one).
   */
  mailboxPartitions: number;
  /** Secret (>= 32 chars) for signing bearer tokens; empty: one shared via NATS KV. */
  tokenSecret: string;
  /** Token lifetime in seconds. */
  tokenTtlSeconds: number;
  /** Version of the sender-certificate key derived from the token secret; raise it to rotate. */
  certificateKeyVersion: number;
  /** TLS certificate and key (PEM paths); both empty serves h2c and HTTP/1.1 in clear. */
  tlsCert: string;
  tlsKey: string;
  /** Log level. */
  logLevel: LogLevel;
  /** Seconds to wait for streams to drain on shutdown. */
  shutdownGraceSeconds: number;
  /** CreateAccount per caller address per hour, across all instances. */
  accountsPerAddressPerHour: number;
  /** One-time prekeys handed out per target device per minute, across all instances. */
  oneTimePrekeysPerDevicePerMinute: number;
  /** Open connections per caller address on this instance. */
  maxConnectionsPerAddress: number;
  /** Prometheus metrics: "same" (GET /metrics on the main port), "off", or "host:port" of an admin listener. */
  metrics: string;
  /** OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces); empty: no tracing. */
  otlpEndpoint: string;
  /** Server processes behind the port (node:cluster); 1 runs the server in this process. */
  workers: number;
}

/** Mailbox partitions a deployment may have. */
export const MAX_MAILBOX_PARTITIONS = 256;
/** The partition count a new deployment gets when its first instance does not name one. */
export const NEW_DEPLOYMENT_PARTITIONS = 4;

interface OptionSpec {
  key: keyof ServerConfig;
  flag: string;
  env: string;
  type: "string" | "number";
  default: string | number;
  help: string;
}

const options: OptionSpec[] = [
  { key: "host", flag: "host", env: "SEALPOST_HOST", type: "string", default: "127.0.0.1", help: "address to listen on" },
  { key: "port", flag: "port", env: "SEALPOST_PORT", type: "number", default: 8080, help: "port for Connect, gRPC and gRPC-Web (0 = any free port)" },
  {
    key: "natsUrl",
    flag: "nats-url",
    env: "NATS_URL",
    type: "string",
    default: "",
    help: "NATS servers, comma-separated; unset starts an embedded nats-server",
  },
  { key: "dataDir", flag: "data-dir", env: "SEALPOST_DATA_DIR", type: "string", default: "./data", help: "JetStream store of the embedded nats-server" },
  {
    key: "natsServerBin",
    flag: "nats-server-bin",
    env: "SEALPOST_NATS_SERVER_BIN",
    type: "string",
    default: "nats-server",
    help: "nats-server binary for the embedded default",
  },
  {
    key: "replicas",
    flag: "replicas",
    env: "SEALPOST_REPLICAS",
    type: "number",
    default: 1,
    help: "JetStream replicas for streams and buckets (3 in a cluster)",
  },
  {
    key: "mailboxPartitions",
    flag: "mailbox-partitions",
    env: "SEALPOST_MAILBOX_PARTITIONS",
    type: "number",
    default: 0,
    help: `mailbox streams devices are hashed onto (1-${MAX_MAILBOX_PARTITIONS}, fixed per deployment); 0: the deployment's count, ${NEW_DEPLOYMENT_PARTITIONS} for a new one`,
  },
  {
    key: "tokenSecret",
    flag: "token-secret",
    env: "SEALPOST_TOKEN_SECRET",
    type: "string",
    default: "",
    help: "token signing secret (>= 32 chars); unset: generated once and shared through NATS KV",
  },
  { key: "tokenTtlSeconds", flag: "token-ttl", env: "SEALPOST_TOKEN_TTL_SECONDS", type: "number", default: 3600, help: "bearer token lifetime in seconds" },
  {
    key: "certificateKeyVersion",
    flag: "certificate-key-version",
    env: "SEALPOST_CERTIFICATE_KEY_VERSION",
    type: "number",
    default: 1,
    help: "sender-certificate key version (derived from the token secret); raise by one to rotate",
  },
  {
    key: "tlsCert",
    flag: "tls-cert",
    env: "SEALPOST_TLS_CERT",
    type: "string",
    default: "",
    help: "TLS certificate (PEM); with --tls-key serves TLS with ALPN h2/http1.1",
  },
  { key: "tlsKey", flag: "tls-key", env: "SEALPOST_TLS_KEY", type: "string", default: "", help: "TLS private key (PEM)" },
  { key: "logLevel", flag: "log-level", env: "SEALPOST_LOG_LEVEL", type: "string", default: "info", help: "debug, info, warn or error" },
  {
    key: "accountsPerAddressPerHour",
    flag: "accounts-per-hour",
    env: "SEALPOST_ACCOUNTS_PER_ADDRESS_PER_HOUR",
    type: "number",
    default: 30,
    help: "CreateAccount per caller address per hour, all instances together (raise it behind a proxy that hides client addresses)",
  },
  {
    key: "oneTimePrekeysPerDevicePerMinute",
    flag: "otpk-per-minute",
    env: "SEALPOST_ONE_TIME_PREKEYS_PER_DEVICE_PER_MINUTE",
    type: "number",
    default: 30,
    help: "one-time prekeys handed out per device per minute (past it bundles come without one)",
  },
  {
    key: "maxConnectionsPerAddress",
    flag: "max-connections-per-address",
    env: "SEALPOST_MAX_CONNECTIONS_PER_ADDRESS",
    type: "number",
    default: 4096,
    help: "open connections per caller address (IPv4, or IPv6 /64) on this instance; more are closed",
  },
  {
    key: "shutdownGraceSeconds",
    flag: "shutdown-grace",
    env: "SEALPOST_SHUTDOWN_GRACE_SECONDS",
    type: "number",
    default: 10,
    help: "seconds to let streams drain on shutdown",
  },
  {
    key: "metrics",
    flag: "metrics",
    env: "SEALPOST_METRICS",
    type: "string",
    default: "same",
    help: "Prometheus metrics: same (GET /metrics on --port), off, or host:port of a separate admin listener",
  },
  {
    key: "workers",
    flag: "workers",
    env: "SEALPOST_WORKERS",
    type: "number",
    default: 1,
    help: "server processes sharing the port, one per core to use them all (1 = this process only)",
  },
  {
    key: "otlpEndpoint",
    flag: "otlp-endpoint",
    env: "SEALPOST_OTLP_ENDPOINT",
    type: "string",
    default: "",
    help: "export OpenTelemetry traces over OTLP/HTTP to this URL (e.g. http://127.0.0.1:4318/v1/traces); unset: no tracing",
  },
];

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function helpText(): string {
  const lines = ["Usage: sealpost-server [options]", "", "Options (each also settable by the env var shown):"];
  for (const o of options) {
    lines.push(`  --${o.flag.padEnd(20)} ${o.env.padEnd(32)} ${o.help} (default: ${JSON.stringify(o.default)})`);
  }
  lines.push(`  --${"help".padEnd(20)} ${"".padEnd(32)} print this help`);
  return lines.join("\n");
}

/** Parses flags and env into a config. Throws ConfigError naming the bad option. */
export function loadConfig(argv: string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): ServerConfig | "help" {
  const parsed = parseArgs({
    args: argv,
    options: Object.fromEntries([...options.map((o) => [o.flag, { type: "string" as const }]), ["help", { type: "boolean" as const, short: "h" }]]),
    strict: true,
    allowPositionals: false,
  });
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return "help";
  const config: Record<string, unknown> = {};
  for (const o of options) {
    const raw = (values[o.flag] as string | undefined) ?? env[o.env];
    if (raw === undefined || raw === "") {
      config[o.key] = o.default;
      continue;
    }
    if (o.type === "number") {
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--${o.flag} / ${o.env} must be a non-negative integer, got ${JSON.stringify(raw)}`);
      config[o.key] = n;
    } else {
      config[o.key] = raw;
    }
  }
  const c = config as unknown as ServerConfig;
  if (!["debug", "info", "warn", "error"].includes(c.logLevel))
    throw new ConfigError(`--log-level must be debug, info, warn or error, got ${JSON.stringify(c.logLevel)}`);
  if (c.port > 65535) throw new ConfigError(`--port must be at most 65535, got ${c.port}`);
  if (c.replicas < 1 || c.replicas > 5) throw new ConfigError(`--replicas must be 1 to 5, got ${c.replicas}`);
  if (c.mailboxPartitions > MAX_MAILBOX_PARTITIONS)
    throw new ConfigError(`--mailbox-partitions must be 1 to ${MAX_MAILBOX_PARTITIONS} (or 0: the deployment's count), got ${c.mailboxPartitions}`);
  if (c.tokenSecret && c.tokenSecret.length < 32) throw new ConfigError("--token-secret must be at least 32 characters");
  if (!Number.isInteger(c.certificateKeyVersion) || c.certificateKeyVersion < 1) throw new ConfigError("--certificate-key-version must be a positive integer");
  if (Boolean(c.tlsCert) !== Boolean(c.tlsKey)) throw new ConfigError("--tls-cert and --tls-key go together");
  if (c.tokenTtlSeconds < 60) throw new ConfigError("--token-ttl must be at least 60 seconds");
  if (c.metrics !== "same" && c.metrics !== "off" && !metricsListener(c.metrics)) {
    throw new ConfigError(`--metrics must be same, off or host:port, got ${JSON.stringify(c.metrics)}`);
  }
  if (c.workers < 1 || c.workers > 64) throw new ConfigError(`--workers must be 1 to 64, got ${c.workers}`);
  if (c.otlpEndpoint && !/^https?:\/\//.test(c.otlpEndpoint))
    throw new ConfigError(`--otlp-endpoint must be an http(s) URL, got ${JSON.stringify(c.otlpEndpoint)}`);
  return c;
}

/** Defaults for tests and embedding: every option at its default, overridden by `over`. */
export function defaultConfig(over: Partial<ServerConfig> = {}): ServerConfig {
  const base = Object.fromEntries(options.map((o) => [o.key, o.default])) as unknown as ServerConfig;
  return { ...base, ...over };
}

/** The admin listener of `--metrics host:port`, or undefined for same/off. */
export function metricsListener(v: string): { host: string; port: number } | undefined {
  const m = /^(.+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) return undefined;
  return { host: m[1].replace(/^\[(.*)\]$/, "$1"), port: Number(m[2]) };
}
