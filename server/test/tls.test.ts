/**
 * The one port with TLS (ALPN picks HTTP/2 or HTTP/1.1): the delivery calls served on the
 * HTTP/2 stream itself (taken before Node's compat layer) and everything else through
 * connect-node, both over TLS, with CORS headers on the native answers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as http2 from "node:http2";
import * as os from "node:os";
import * as path from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { AckRequestSchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";

let nats: TestNats;
let server: RunningServer;
let dir: string;
let ca: Buffer;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sealpost-tls-"));
  const [cert, key] = [path.join(dir, "cert.pem"), path.join(dir, "key.pem")];
  // A self-signed certificate for 127.0.0.1 (openssl ships with Debian).
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  ]);
  ca = fs.readFileSync(cert);
  nats = await startTestNats();
  server = await startTestServer(nats.url, { tlsCert: cert, tlsKey: key });
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** One HTTP/2 POST over TLS: status, headers and body. */
function h2Post(p: string, headers: Record<string, string>, body: Uint8Array): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(server.url, { ca });
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": p, ...headers });
    let h: http2.IncomingHttpHeaders = {};
    let text = "";
    req.on("response", (r) => (h = r));
    req.on("data", (c: Buffer) => (text += c.toString()));
    req.on("end", () => {
      session.close();
      resolve({ status: Number(h[":status"]), headers: h, body: text });
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("TLS on the one port", () => {
  it("serves the native delivery calls over HTTP/2 (token checked from the headers, CORS on the answer)", async () => {
    expect(server.url.startsWith("https://")).toBe(true);
    const ack = toBinary(AckRequestSchema, create(AckRequestSchema, { sequences: [1n] }));
    const origin = { origin: "https://chat.example", "content-type": "application/proto" };
    const none = await h2Post("/sealpost.delivery.v1.DeliveryService/Ack", origin, ack);
    expect({ status: none.status, body: JSON.parse(none.body) }).toEqual({
      status: 401,
      body: { code: "unauthenticated", message: "missing authorization header (expected 'Bearer <token>' from Authenticate)" },
    });
    expect(none.headers["access-control-allow-origin"]).toBe("https://chat.example");
    // A valid token of a device no account lists: the handler's own refusal, so the native
    // handler (not only the token check in front of it) served the call.
    const token = server.context.tokens.issue("nobody-here", 1, 60_000).token;
    const unlisted = await h2Post("/sealpost.delivery.v1.DeliveryService/Ack", { ...origin, authorization: `Bearer ${token}` }, ack);
    expect(unlisted.status).toBe(401);
    expect(JSON.parse(unlisted.body).message).toMatch(/not in its account's device list/);
    expect(unlisted.headers["access-control-allow-origin"]).toBe("https://chat.example");
  });

  it("serves the other calls through connect-node, over HTTP/2 and over HTTP/1.1 (ALPN)", async () => {
    const limits = "/sealpost.delivery.v1.DeliveryService/GetLimits";
    const json = { "content-type": "application/json" };
    const h2 = await h2Post(limits, json, Buffer.from("{}"));
    expect(h2.status).toBe(200);
    expect(JSON.parse(h2.body)).toHaveProperty("limits.maxBodyBytes");
    const h1 = await new Promise<{ status: number; version: string; body: string }>((resolve, reject) => {
      const req = https.request(`${server.url}${limits}`, { method: "POST", ca, headers: json }, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, version: res.httpVersion, body: text }));
      });
      req.on("error", reject);
      req.end("{}");
    });
    expect({ status: h1.status, version: h1.version }).toEqual({ status: 200, version: "1.1" });
    expect(JSON.parse(h1.body)).toHaveProperty("limits.maxBodyBytes");
  });
});
