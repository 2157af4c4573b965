/**
 * sealpost-server entry point: `npm start` (builds it with server/build.mjs, then runs the
 * bundle with node), or `npx tsx server/src/main.ts` from the sources.
 */
import { ConfigError, helpText, loadConfig } from "./config.js";
import { NatsServerMissingError } from "./nats/embedded-server.js";
import { startServer } from "./server.js";
import { createLogger } from "./logger.js";
import { isWorker, runPrimary, workerId } from "./workers.js";

async function main(): Promise<number> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`sealpost-server: ${(err as Error).message}\n\n${helpText()}\n`);
    return 2;
  }
  if (config === "help") {
    process.stdout.write(helpText() + "\n");
    return 0;
  }
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    // --workers N: this process only supervises N server processes (workers.ts).
    if (config.workers > 1 && !isWorker()) return await runPrimary(config, createLogger(config.logLevel));
    server = await startServer(config, isWorker() ? { log: createLogger(config.logLevel, undefined, { worker: workerId() }) } : {});
  } catch (err) {
    if (err instanceof NatsServerMissingError || err instanceof ConfigError) {
      process.stderr.write(`sealpost-server: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  await server.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`sealpost-server: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  },
);
