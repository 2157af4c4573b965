/**
 * GET /metrics in the Prometheus text format: on the main port (wrapping its handler), or on
 * an admin listener of its own (`--metrics host:port`) so the main port need not expose it.
 */
import * as http from "node:http";
import type { RequestHandler } from "../one-port.js";

export const METRICS_PATH = "/metrics";

/** What /metrics serves: a prom-client Registry, or with --workers every worker's added up. */
export interface MetricsSource {
  contentType: string;
  metrics(): Promise<string>;
}

export function withMetricsEndpoint(next: RequestHandler, registry: MetricsSource): RequestHandler {
  return (req, res) => {
    if (req.method === "GET" && (req.url ?? "").split("?")[0] === METRICS_PATH) return serve(registry, res);
    next(req, res);
  };
}

function serve(registry: MetricsSource, res: Parameters<RequestHandler>[1]): void {
  registry.metrics().then(
    (text) => {
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(text);
    },
    (err: unknown) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(`metrics failed: ${(err as Error)?.message ?? err}\n`);
    },
  );
}

/** An HTTP/1.1 listener serving only /metrics. */
export async function listenMetrics(host: string, port: number, registry: MetricsSource): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer(
    withMetricsEndpoint((_req, res) => {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("only /metrics here\n");
    }, registry),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
