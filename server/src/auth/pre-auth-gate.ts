/**
 * No work before authentication. A call to a method that needs a token, arriving without a
 * valid one (missing, malformed, forged, expired), is answered UNAUTHENTICATED right here,
 * from its headers alone: its body is never decompressed, buffered or parsed (it is read and
 * dropped as it arrives, or the HTTP/1.1 connection is closed). Before this gate a 5 KB
 * gzip body inflating to 5 MiB was decompressed and parsed before the handler refused it.
 *
 * The answer is the one connect-es gives, per protocol: Connect unary (HTTP 401 and a JSON
 * error), Connect streaming (an end-stream message), gRPC and gRPC-Web (trailers-only with
 * grpc-status 16). A token that is valid but belongs to a revoked device passes here and is
 * refused by the handler (that needs the device list).
 */
import type * as http2 from "node:http2";
import type { RequestHandler } from "../one-port.js";
import type { TokenSigner } from "./tokens.js";
import { ConnectError } from "@connectrpc/connect";
import { checkBearer } from "./authenticator.js";
import { envelope, headersSetOn } from "../wire-frames.js";

/** Methods callable without a token: everything else needs `authorization: Bearer <token>`. */
const OPEN_METHODS = new Set([
  "/sealpost.directory.v1.DirectoryService/CreateAccount",
  "/sealpost.directory.v1.DirectoryService/GetAuthChallenge",
  "/sealpost.directory.v1.DirectoryService/Authenticate",
  "/sealpost.directory.v1.DirectoryService/GetDeviceList",
  "/sealpost.directory.v1.DirectoryService/GetCertificateKeys",
  // Key transparency: anyone may audit the log (answers come from memory).
  "/sealpost.directory.v1.DirectoryService/GetTreeHead",
  "/sealpost.directory.v1.DirectoryService/GetConsistencyProof",
  "/sealpost.directory.v1.DirectoryService/GetLogEntries",
  "/sealpost.delivery.v1.DeliveryService/GetLimits",
  // Sealed sender: the access key in the body stands in for a token (limited per caller address first).
  "/sealpost.delivery.v1.DeliveryService/SendSealed",
]);
const OPEN_SERVICES = ["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/"];
const GATED_SERVICES = ["/sealpost.directory.v1.DirectoryService/", "/sealpost.delivery.v1.DeliveryService/"];

/** Whether a call (a POST) to `path` needs a bearer token; also the native delivery front's rule. */
export function needsToken(path: string): boolean {
  return !OPEN_METHODS.has(path) && !OPEN_SERVICES.some((s) => path.startsWith(s)) && GATED_SERVICES.some((s) => path.startsWith(s));
}

export function withPreAuthGate(handler: RequestHandler, tokens: TokenSigner): RequestHandler {
  return (req, res) => {
    if (req.method !== "POST" || !needsToken((req.url ?? "").split("?")[0])) {
      handler(req, res);
      return;
    }
    const header = req.headers["authorization"];
    try {
      checkBearer(typeof header === "string" ? header : undefined, tokens);
    } catch (err) {
      // The handler's own message (auth/authenticator.ts checkBearer).
      refuse(req, res, err instanceof ConnectError ? err.rawMessage : "invalid authorization");
      return;
    }
    handler(req, res);
  };
}

/** The answer to a call refused for its token, per protocol: what connect-es answers. */
function refusal(contentType: string, message: string): { status: number; headers: Record<string, string>; body?: Buffer } {
  if (contentType.startsWith("application/grpc")) {
    // gRPC and gRPC-Web: trailers-only. On HTTP/2 that must be ONE headers frame carrying
    // END_STREAM (grpc-js and grpcio ignore a status in headers followed by an empty data
    // frame), which only the native stream API sends.
    return { status: 200, headers: { "content-type": contentType.split(";")[0], "grpc-status": "16", "grpc-message": encodeURIComponent(message) } };
  }
  if (contentType.startsWith("application/connect+")) {
    // Connect streaming: an end-stream message (flags 0x02) carrying the error.
    const body = envelope(0x02, Buffer.from(JSON.stringify({ error: { code: "unauthenticated", message } })));
    return { status: 200, headers: { "content-type": contentType.split(";")[0] }, body };
  }
  // Connect unary (application/json or application/proto), or anything else.
  return { status: 401, headers: { "content-type": "application/json" }, body: Buffer.from(JSON.stringify({ code: "unauthenticated", message })) };
}

function refuse(req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1], message: string): void {
  // Drop the body as it arrives (no buffering, no decompression); an HTTP/1.1 connection
  // is closed after the answer.
  req.on("error", () => {});
  req.resume();
  const r = res as import("node:http").ServerResponse;
  if (!("stream" in req)) r.setHeader("connection", "close");
  const answer = refusal(String(req.headers["content-type"] ?? ""), message);
  const stream = (res as { stream?: http2.ServerHttp2Stream }).stream;
  if (stream && !answer.body) stream.respond({ ":status": answer.status, ...answer.headers, ...headersSetOn(res) }, { endStream: true });
  else {
    r.writeHead(answer.status, answer.headers);
    r.end(answer.body);
  }
}

/**
 * The same refusal for a call served on the native HTTP/2 stream (delivery/native-delivery.ts),
 * with `extra` headers (CORS) on the answer.
 */
export function refuseStream(stream: http2.ServerHttp2Stream, contentType: string, extra: Record<string, string>, message: string): void {
  stream.resume();
  const answer = refusal(contentType, message);
  stream.respond({ ":status": answer.status, ...answer.headers, ...extra }, { endStream: !answer.body });
  if (answer.body) stream.end(answer.body);
}
