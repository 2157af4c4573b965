/**
 * Shared bits of the fuzz tests (fuzz-framing, fuzz-rpc): a server logger that collects every
 * error line (the tests assert there are none), a health check that must answer SERVING, and
 * the outcome table printed after the run.
 */
import { expect } from "vitest";
import { createClient, type Client } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@sealpost/gen/grpc/health/v1/health_pb.js";
import { plainTransport } from "@sealpost/test-support";
import { createLogger, type Logger } from "../../src/logger.js";

/** A "warn" logger that pushes every error-level line into `errorLogs`. */
export function errorCollectingLogger(errorLogs: string[]): Logger {
  return createLogger("warn", (line) => {
    if (/"level":"error"/.test(line)) errorLogs.push(line);
  });
}

/**
 * One health client (one h2 connection) per server URL: a transport per check would leave an
 * open connection on both sides for every check, which the heap checks would count.
 */
const healthClients = new Map<string, Client<typeof Health>>();

/** The server at `url` answers its health check with SERVING. */
export async function expectServing(url: string): Promise<void> {
  let client = healthClients.get(url);
  if (!client) healthClients.set(url, (client = createClient(Health, plainTransport(url))));
  const res = await client.check({ service: "" }, { timeoutMs: 10_000 });
  expect(res.status).toBe(Status.SERVING);
}

/** Prints the outcome counts, most frequent first, names padded to `width` (nothing when empty). */
export function printOutcomes(title: string, outcomes: Map<string, number>, width: number): void {
  if (outcomes.size) {
    const rows = [...outcomes.entries()].sort((x, y) => y[1] - x[1]).map(([k, n]) => `  ${k.padEnd(width)} ${n}`);
    process.stdout.write(`\n${title}:\n${rows.join("\n")}\n`);
  }
}
