/**
 * `npm run web`: a sealpost server on the embedded default (its own nats-server under
 * ./data/web, or the NATS at NATS_URL) on port 8080, and the chat page (Vite) on
 * http://localhost:5173 talking to it. Open the page in two browser profiles (or a profile and
 * the CLI) to chat. Ctrl-C stops both.
 */
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { createServer } from "vite";
import { createLogger, defaultConfig, startServer } from "@sealpost/server";

const here = import.meta.dirname;
const port = Number(process.env.PORT ?? 8080);
const dataDir = resolve(process.env.SEALPOST_DATA_DIR ?? "data/web");
await mkdir(dataDir, { recursive: true });
const server = await startServer(defaultConfig({ natsUrl: process.env.NATS_URL ?? "", dataDir, port, host: "127.0.0.1" }), { log: createLogger("warn") });
const vite = await createServer({ configFile: resolve(here, "vite.config.ts") });
await vite.listen();
const page = `http://localhost:${vite.config.server.port}/?server=${encodeURIComponent(`http://localhost:${port}`)}`;
console.log(`sealpost server: ${server.url}\nchat page:       ${page}`);
const stop = async () => {
  await vite.close();
  await server.close();
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
