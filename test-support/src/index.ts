/** Test helpers shared by every package's tests: nats-server and sealpost servers, accounts, raw RPCs, traffic, fault ledgers. */
export * from "./nats-server.js";
export * from "./sealpost-server.js";
export * from "./transports.js";
export * from "./accounts.js";
export * from "./use-test-server.js";
export * from "./traffic.js";
export * from "./raw-rpc.js";
export * from "./profile.js";
export * from "./server-process.js";
export * from "./nats-cluster.js";
export * from "./ledger.js";
export * from "./arbitrary-message.js";
export * from "./delaying-proxy.js";
