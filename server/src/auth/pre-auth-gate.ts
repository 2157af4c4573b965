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
import type { RequestHandler } from "../one-port.js";
import type { TokenSigner } from "./tokens.js";
import { ConnectError } from "@connectrpc/connect";
import { checkBearer, type AuthenticatedDevice } from "./authenticator.js";
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

export function withPreAuthGate(handler: RequestHandler, tokens: TokenSigner): RequestHandler {
  return (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method !== "POST" || OPEN_METHODS.has(path) || OPEN_SERVICES.some((s) => path.startsWith(s)) || !GATED_SERVICES.some((s) => path.startsWith(s))) {
      handler(req, res);
      return;
    }
    const header = req.headers["authorization"];
    let claims: AuthenticatedDevice;
    try {
      claims = checkBearer(typeof header === "string" ? header : undefined, tokens);
    } catch (err) {
      // The handler's own message (auth/authenticator.ts checkBearer).
      refuse(req, res, err instanceof ConnectError ? err.rawMessage : "invalid authorization");
      return;
    }
    checked.set(req, claims);
    handler(req, res);
  };
}

/** Tokens this gate checked, per request: the handlers served natively use them instead of verifying again. */
const checked = new WeakMap<object, AuthenticatedDevice>();

/** The device of the request's token as the gate checked it (undefined when the gate did not look). */
export function gateChecked(req: object): AuthenticatedDevice | undefined {
  return checked.get(req);
}

function refuse(req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1], message: string): void {
  // Drop the body as it arrives (no buffering, no decompression); an HTTP/1.1 connection
  // is closed after the answer.
  req.on("error", () => {});
  req.resume();
  const h1 = !("stream" in req);
  const contentType = String(req.headers["content-type"] ?? "");
  const r = res as import("node:http").ServerResponse;
  if (h1) r.setHeader("connection", "close");
  if (contentType.startsWith("application/grpc")) {
    // gRPC and gRPC-Web: trailers-only response. On HTTP/2 that must be ONE headers frame
    // carrying END_STREAM (grpc-js and grpcio ignore a status in headers followed by an
    // empty data frame), which only the native stream API sends.
    const headers = { "content-type": contentType.split(";")[0], "grpc-status": "16", "grpc-message": encodeURIComponent(message) };
    const stream = (res as { stream?: import("node:http2").ServerHttp2Stream }).stream;
    if (stream) stream.respond({ ":status": 200, ...headers, ...headersSetOn(res) }, { endStream: true });
    else {
      r.writeHead(200, headers);
      r.end();
    }
  } else if (contentType.startsWith("application/connect+")) {
    // Connect streaming: an end-stream message (flags 0x02) carrying the error.
    r.writeHead(200, { "content-type": contentType.split(";")[0] });
    r.end(envelope(0x02, Buffer.from(JSON.stringify({ error: { code: "unauthenticated", message } }))));
  } else {
    // Connect unary (application/json or application/proto), or anything else.
    r.writeHead(401, { "content-type": "application/json" });
    r.end(JSON.stringify({ code: "unauthenticated", message }));
  }
}
