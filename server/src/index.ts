/**
 * The sealpost server as a library: start an instance in-process (tests, the demo, embedding),
 * with its configuration and logger. `@sealpost/server/nats` exposes the NATS layer for tools
 * and probes (embedded nats-server, connection, stream names, batched reads).
 */
export { startServer, type RunningServer, type ServerDeps } from "./server.js";
export { defaultConfig, type ServerConfig } from "./config.js";
export { createLogger, silentLogger, type Logger } from "./logger.js";
export { addressKey, parseAddressKey } from "./device-address.js";
