export * from "./nats-server.js";
export * from "./sealpost-server.js";
export * from "./transports.js";
export * from "./accounts.js";
export * from "./use-test-server.js";
