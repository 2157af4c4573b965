/**
 * CORS for browser clients (Connect and gRPC-Web from a web page on another origin).
 * Answers preflights and exposes the headers Connect and gRPC-Web need.
 */
import type { RequestHandler } from "./one-port.js";

const allowHeaders = [
  "authorization",
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "grpc-timeout",
  "x-grpc-web",
  "x-user-agent",
  "connect-content-encoding",
  "connect-accept-encoding",
].join(", ");
const exposeHeaders = ["grpc-status", "grpc-message", "grpc-status-details-bin", "connect-content-encoding"].join(", ");

/** The CORS headers of every answer to a request from `origin` (none without one). */
export function corsHeaders(origin: string | string[] | undefined): Record<string, string> {
  if (typeof origin !== "string") return {};
  return { "access-control-allow-origin": origin, vary: "origin", "access-control-expose-headers": exposeHeaders };
}

export function withCors(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    const origin = req.headers["origin"];
    if (typeof origin === "string") {
      for (const [name, value] of Object.entries(corsHeaders(origin))) res.setHeader(name, value);
      if (req.method === "OPTIONS") {
        res.setHeader("access-control-allow-methods", "POST, GET");
        res.setHeader("access-control-allow-headers", allowHeaders);
        res.setHeader("access-control-max-age", "7200");
        res.writeHead(204);
        res.end();
        return;
      }
    }
    handler(req, res);
  };
}
