/**
 * `npm run demo`: starts a server on the embedded default (its own nats-server under a temp
 * directory; or the NATS at NATS_URL), plays the demo scenario, stops everything and exits.
 * The server is imported only here, to stand it up; the SDK talks to it over the network.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultConfig, silentLogger, startServer } from "@sealpost/server";
import { runDemo } from "./demo-scenario.js";

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), "sealpost-demo-"));
  const natsUrl = process.env.NATS_URL ?? "";
  console.log(`Starting a sealpost server (${natsUrl ? `NATS at ${natsUrl}` : "embedded nats-server"})...`);
  const server = await startServer(defaultConfig({ natsUrl, dataDir, port: 0, host: "127.0.0.1", shutdownGraceSeconds: 1 }), { log: silentLogger });
  let failed = false;
  try {
    console.log(`Server listening on ${server.url}\n`);
    // Unique account ids, so the demo can run again against a persistent NATS_URL.
    await runDemo({ serverUrl: server.url, suffix: natsUrl ? `-${Date.now().toString(36)}` : "" });
    console.log("\nDemo finished.");
  } catch (err) {
    failed = true;
    console.error(`Demo failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

void main();
