/**
 * Requests that cannot be decoded (malformed or truncated protobuf, invalid UTF-8 in a string
 * field, a compressed flag without a negotiated encoding) answer INVALID_ARGUMENT on every
 * protocol and kind of call, never INTERNAL, and leave one log line that names the method and
 * the reason but carries none of the request's bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import {
  createTestAccount,
  envelope,
  rawCall,
  startTestNats,
  startTestServer,
  type RawProtocol,
  type TestAccount,
  type TestNats,
} from "@sealpost/test-support";
import type { RunningServer } from "../../src/server.js";

let nats: TestNats;
let server: RunningServer;
let alice: TestAccount;
const logs: string[] = [];

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url, {}, { log: createLogger("info", (line) => logs.push(line)) });
  alice = await createTestAccount(server.url, "decode-failures", { devices: 1 });
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
});

/** Distinctive bytes, so the log check can look for them. */
const MARKER = Buffer.from("SECRET-PAYLOAD-MARKER");

const bodies: { name: string; payload: Buffer; flags?: number; reason: RegExp }[] = [
  // Field 1 (a string in every request used below) declared 2 bytes long, 0xff 0xfe is not UTF-8.
  { name: "invalid UTF-8 in a string", payload: Buffer.concat([Buffer.from([0x0a, 0x02, 0xff, 0xfe])]), reason: /^parse binary: / },
  // A length-delimited field that claims more bytes than follow.
  { name: "truncated", payload: Buffer.concat([Buffer.from([0x0a, 0x7f]), MARKER]), reason: /^parse binary: / },
  // A varint that never ends.
  {
    name: "malformed varint",
    payload: Buffer.concat([MARKER, Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]),
    reason: /^parse binary: /,
  },
  // The compressed flag with no grpc-encoding / connect-content-encoding negotiated.
  { name: "compressed without an encoding", payload: MARKER, flags: 1, reason: /compressed envelope/ },
];

const calls: { name: string; path: string; streaming: boolean; auth: boolean; protocols: RawProtocol[] }[] = [
  {
    name: "unary without auth (Health/Check)",
    path: "/grpc.health.v1.Health/Check",
    streaming: false,
    auth: false,
    protocols: ["connect-proto-h2", "grpc", "grpc-web"],
  },
  {
    name: "unary with auth (Ack)",
    path: "/sealpost.delivery.v1.DeliveryService/Ack",
    streaming: false,
    auth: true,
    protocols: ["connect-proto-h2", "grpc", "grpc-web"],
  },
  {
    name: "server streaming (Receive)",
    path: "/sealpost.delivery.v1.DeliveryService/Receive",
    streaming: true,
    auth: true,
    protocols: ["connect-proto-h2", "grpc", "grpc-web"],
  },
  { name: "bidi (Session)", path: "/sealpost.delivery.v1.DeliveryService/Session", streaming: true, auth: true, protocols: ["connect-proto-h2", "grpc"] },
];

describe("undecodable requests are INVALID_ARGUMENT, logged without payload", () => {
  for (const call of calls)
    for (const protocol of call.protocols)
      for (const b of bodies) {
        // Connect unary has no envelope, hence no compressed flag.
        if (b.flags && protocol === "connect-proto-h2" && !call.streaming) continue;
        it(`${call.name} over ${protocol}: ${b.name}`, async () => {
          const before = logs.length;
          const framed = protocol !== "connect-proto-h2" || call.streaming;
          const out = await rawCall({
            baseUrl: server.url,
            path: call.path,
            protocol,
            streaming: call.streaming,
            body: framed ? envelope(b.payload, b.flags ?? 0) : b.payload,
            headers: call.auth ? { authorization: `Bearer ${alice.devices[0].token}` } : {},
            timeoutMs: 10_000,
          });
          expect(out.code, out.message).toBe("invalid_argument");
          expect(out.message).toMatch(b.reason);
          const lines = logs.slice(before).filter((l) => l.includes("request could not be decoded"));
          expect(lines).toHaveLength(1);
          const line = JSON.parse(lines[0]) as { level: string; method: string; reason: string };
          expect(line.level).toBe("warn");
          expect(line.method).toBe(call.path.slice(1));
          expect(line.reason).toMatch(b.reason);
          // Neither the raw bytes nor any rendering of them reach the log.
          for (const l of logs.slice(before)) {
            expect(l).not.toContain(MARKER.toString());
            expect(l).not.toContain(MARKER.toString("base64"));
            expect(l).not.toContain(MARKER.toString("hex"));
          }
        });
      }

  it("a well-formed request on the same paths still succeeds (the rewrite touches only decode failures)", async () => {
    const out = await rawCall({ baseUrl: server.url, path: "/grpc.health.v1.Health/Check", protocol: "grpc", body: envelope(Buffer.alloc(0)) });
    expect(out.code).toBe("ok");
    const web = await rawCall({ baseUrl: server.url, path: "/grpc.health.v1.Health/Check", protocol: "grpc-web", body: envelope(Buffer.alloc(0)) });
    expect(web.code).toBe("ok");
    // An error that is not a decode failure keeps its code (no token: UNAUTHENTICATED).
    const denied = await rawCall({ baseUrl: server.url, path: "/sealpost.delivery.v1.DeliveryService/Ack", protocol: "grpc", body: envelope(Buffer.alloc(0)) });
    expect(denied.code).toBe("unauthenticated");
  });
});
