/** The server's NATS layer, for tools and probes that work on the same streams. */
export { startEmbeddedNats, natsServerVersion, type EmbeddedNats } from "./embedded-server.js";
export { connectNats, type Nats } from "./connection.js";
export { bucketNames, ensureLayout, mailboxPartition, mailboxStreamName, mailboxSubject } from "./layout.js";
export { BatchReads } from "./batch-reads.js";
