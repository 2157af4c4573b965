/**
 * Send and Ack served on the native HTTP/2 stream (delivery/native-unary.ts) answer as
 * connect-node does: each request goes once as the native path takes it and once with a
 * deadline header (which sends it on to connect-node), over Connect (unary), gRPC and
 * gRPC-Web on h2, and the answers are compared: status, content type, codes and messages
 * (headers, trailers, JSON), error metadata (the retry hint of a shed Send), and the
 * decoded responses with sequences and times set aside.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import * as http2 from "node:http2";
import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  AckRequestSchema,
  AckResponseSchema,
  SendRequestSchema,
  SendResponseSchema,
  SendEntrySchema,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { createTestAccount, envelope, startTestNats, startTestServer, type TestAccount, type TestDevice, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { revokeDeviceChange } from "@sealpost/client/directory";
import { READ_MAX_BYTES } from "../src/server.js";
import { WAIT } from "./delivery-helpers.js";

type Wire = "connect" | "grpc" | "grpc-web";
const WIRES: Wire[] = ["connect", "grpc", "grpc-web"];
const CONTENT_TYPE: Record<Wire, string> = { connect: "application/proto", grpc: "application/grpc+proto", "grpc-web": "application/grpc-web+proto" };
const SEND = "/sealpost.delivery.v1.DeliveryService/Send";
const ACK = "/sealpost.delivery.v1.DeliveryService/Ack";

let nats: TestNats;
let server: RunningServer;
/** A server that sheds a Send as soon as one store is in flight (admission control). */
let tight: RunningServer;
let alice: TestAccount;
let bob: TestAccount;
let tAlice: TestAccount;
let tBob: TestAccount;

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url);
  tight = await startTestServer(nats.url, {}, { delivery: { maxStoresInFlight: 1 } });
  [alice, bob] = await Promise.all([createTestAccount(server.url, "unary-alice"), createTestAccount(server.url, "unary-bob")]);
  [tAlice, tBob] = await Promise.all([createTestAccount(tight.url, "unary-tight-alice"), createTestAccount(tight.url, "unary-tight-bob")]);
});
afterAll(async () => {
  await tight?.close();
  await server?.close();
  await nats?.stop();
});

interface Answer {
  status: number;
  contentType: string;
  /** gRPC status (headers or trailers), gRPC-Web's trailer frame, or the Connect error JSON's code; "ok" for a Connect success. */
  code: string;
  message?: string;
  retryAfterMs?: string;
  /** The response message, when there is one. */
  body?: Uint8Array;
  /** CORS response headers (allow-origin, vary, expose-headers), when the call sent an origin. */
  cors?: string;
}

/** One unary call over h2 with raw framing; via connect-node when `viaConnectNode` (a deadline header). */
function call(baseUrl: string, path: string, wire: Wire, message: Uint8Array, headers: Record<string, string>, viaConnectNode: boolean): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(baseUrl);
    session.on("error", reject);
    const h: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": path, "content-type": CONTENT_TYPE[wire], ...headers };
    if (wire === "grpc") h.te = "trailers";
    if (viaConnectNode) h[wire === "connect" ? "connect-timeout-ms" : "grpc-timeout"] = wire === "connect" ? "60000" : "60S";
    const req = session.request(h);
    const answer: Answer = { status: 0, contentType: "", code: "" };
    const chunks: Buffer[] = [];
    const status = (s: http2.IncomingHttpHeaders) => {
      if (s["grpc-status"] !== undefined) answer.code = String(s["grpc-status"]);
      if (s["grpc-message"] !== undefined) answer.message = decodeURIComponent(String(s["grpc-message"]));
      if (s["sealpost-retry-after-ms"] !== undefined) answer.retryAfterMs = String(s["sealpost-retry-after-ms"]);
    };
    req.on("response", (rh) => {
      answer.status = Number(rh[":status"]);
      answer.contentType = String(rh["content-type"]);
      if (rh["access-control-allow-origin"] !== undefined)
        answer.cors = [rh["access-control-allow-origin"], rh.vary, rh["access-control-expose-headers"]].join(" | ");
      status(rh);
    });
    req.on("trailers", status);
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      const body = Buffer.concat(chunks);
      if (wire === "connect") {
        if (answer.status === 200) [answer.code, answer.body] = ["ok", body];
        else {
          const j = JSON.parse(body.toString()) as { code: string; message?: string };
          [answer.code, answer.message] = [j.code, j.message];
        }
      } else {
        for (let b = body; b.length >= 5; b = b.subarray(5 + b.readUInt32BE(1))) {
          const payload = b.subarray(5, 5 + b.readUInt32BE(1));
          if (b[0] & 0x80) {
            const text = payload.toString();
            answer.code = /grpc-status: (\d+)/.exec(text)![1];
            const m = /grpc-message: (.*)\r\n/.exec(text);
            if (m) answer.message = decodeURIComponent(m[1]);
            const r = /sealpost-retry-after-ms: (\d+)\r\n/.exec(text);
            if (r) answer.retryAfterMs = r[1];
          } else answer.body = payload;
        }
      }
      resolve(answer);
    });
    req.on("error", reject);
    req.end(wire === "connect" ? message : envelope(message));
  });
}

/** The same call on both paths; the answers with per-message values (sequences, times) set aside. */
async function both(path: string, wire: Wire, message: (i: number) => Uint8Array, device: TestDevice, baseUrl = server.url) {
  const [native, viaConnect] = [
    await call(baseUrl, path, wire, message(0), device.headers, false),
    await call(baseUrl, path, wire, message(1), device.headers, true),
  ];
  const shape = (a: Answer) => ({ ...a, body: a.body && (path === SEND ? sendShape(a.body) : fromBinary(AckResponseSchema, a.body)) });
  return { native: shape(native), viaConnect: shape(viaConnect) };
}

function sendShape(body: Uint8Array) {
  const r = fromBinary(SendResponseSchema, body);
  if (r.outcome.case === "stored") {
    r.outcome.value.serverTimestampMs = 0n;
    for (const e of r.outcome.value.entries) e.sequence = e.sequence > 0n ? 1n : 0n;
  }
  return r;
}

const ids = [randomBytes(16), randomBytes(16)];
function sendTo(to: TestDevice, over: { messageId?: Uint8Array; entries?: []; retry?: boolean } = {}) {
  return (i: number) =>
    toBinary(
      SendRequestSchema,
      create(SendRequestSchema, {
        messageId: ids[i],
        sharedBody: Buffer.from("body"),
        entries: [create(SendEntrySchema, { device: create(DeviceAddressSchema, to.address), entry: Buffer.from("entry") })],
        ...over,
      }),
    );
}

describe("Send and Ack on the native stream answer as connect-node does", () => {
  for (const wire of WIRES) {
    it(`${wire}: a stored Send, its retry (duplicate), one without entries, and a mismatched one`, async () => {
      for (const i of [0, 1]) ids[i] = randomBytes(16);
      const first = await both(SEND, wire, sendTo(bob.devices[0]), alice.devices[0]);
      expect(first.native.code).toBe(wire === "connect" ? "ok" : "0");
      expect(first.native.body).toMatchObject({ outcome: { case: "stored" } });
      expect(first.native).toEqual(first.viaConnect);
      const retry = await both(SEND, wire, sendTo(bob.devices[0], { retry: true }), alice.devices[0]);
      expect(retry.native.body).toMatchObject({ outcome: { value: { duplicate: true } } });
      expect(retry.native).toEqual(retry.viaConnect);
      const noEntries = await both(SEND, wire, (i) => sendTo(bob.devices[0], { messageId: randomBytes(16), entries: [] })(i), alice.devices[0]);
      expect(noEntries.native.code).toBe(wire === "connect" ? "invalid_argument" : "3");
      expect(noEntries.native).toEqual(noEntries.viaConnect);
      // A device bob never had: answered with the mismatch (nothing stored).
      const nobody = { ...bob.devices[0], address: { ...bob.devices[0].address, deviceId: 99 } };
      const mismatch = await both(SEND, wire, (i) => sendTo(nobody, { messageId: randomBytes(16) })(i), alice.devices[0]);
      expect(mismatch.native.body).toMatchObject({ outcome: { case: "mismatchedDevices" } });
      expect(mismatch.native).toEqual(mismatch.viaConnect);
    });

    it(`${wire}: invalid, undecodable, compressed-flag and oversized requests are answered alike`, async () => {
      const bad = await both(SEND, wire, sendTo(bob.devices[0], { messageId: Buffer.from("short") }), alice.devices[0]);
      expect(bad.native.message).toBe("message_id must be exactly 16 bytes, got 5");
      expect(bad.native).toEqual(bad.viaConnect);
      const undecodable = await both(SEND, wire, () => Buffer.from([0x0a, 0x7f, 1]), alice.devices[0]);
      expect(undecodable.native.code).toBe(wire === "connect" ? "invalid_argument" : "3");
      expect(undecodable.native).toEqual(undecodable.viaConnect);
      const big = await both(SEND, wire, () => Buffer.alloc(READ_MAX_BYTES + 64, 1), alice.devices[0]);
      expect(big.native.code).toBe(wire === "connect" ? "resource_exhausted" : "8");
      expect(big.native.message).toMatch(/larger than configured readMaxBytes/);
      expect({ ...big.native, message: "" }).toEqual({ ...big.viaConnect, message: "" });
      if (wire !== "connect") {
        // A compressed flag without a negotiated encoding, and two messages in a unary call.
        for (const body of [envelope(Buffer.from([0x08]), 1), Buffer.concat([envelope(Buffer.from([])), envelope(Buffer.from([]))])]) {
          const answers = await Promise.all([false, true].map((via) => rawEnveloped(SEND, wire, body, alice.devices[0], via)));
          expect(answers[0].code).not.toBe("0");
          expect(answers[0]).toEqual(answers[1]);
        }
      }
    });

    it(`${wire}: Ack of delivered mail, and an invalid Ack`, async () => {
      const ok = await both(ACK, wire, () => toBinary(AckRequestSchema, create(AckRequestSchema, { sequences: [999_999n] })), bob.devices[0]);
      expect(ok.native.body).toMatchObject({ deleted: 0 });
      expect(ok.native).toEqual(ok.viaConnect);
      const empty = await both(ACK, wire, () => toBinary(AckRequestSchema, create(AckRequestSchema, {})), bob.devices[0]);
      expect(empty.native.message).toBe("sequences must not be empty");
      expect(empty.native).toEqual(empty.viaConnect);
    });

    it(`${wire}: a shed Send carries its retry hint (error metadata) on both paths`, async () => {
      const send = (via: boolean) => call(tight.url, SEND, wire, sendTo(tBob.devices[0], { messageId: randomBytes(16) })(0), tAlice.devices[0].headers, via);
      // Device lists in memory first, so a Send's only NATS round trip is its store.
      expect((await send(false)).code).toBe(wire === "connect" ? "ok" : "0");
      // NATS frozen: one admitted Send's store stays in flight, so the next one is shed.
      const shedWhileFull = async (via: boolean) => {
        nats.pause!();
        let admitted: Promise<Answer> | undefined;
        try {
          admitted = send(via);
          await vi.waitFor(() => expect(tight.context.nats.publisher.inFlight).toBeGreaterThan(0), WAIT);
          return await send(via);
        } finally {
          nats.resume!();
          await admitted;
        }
      };
      const native = await shedWhileFull(false);
      const viaConnect = await shedWhileFull(true);
      expect(native.retryAfterMs).toBeDefined();
      expect(native.code).toBe(wire === "connect" ? "resource_exhausted" : "8");
      expect(native.message).toMatch(/^server busy: \d+ stores in flight/);
      expect({ ...native, message: "" }).toEqual({ ...viaConnect, message: "" });
    });
  }

  it("checks the token from the headers before the body, and answers a page's origin with CORS headers, as the compat path does", async () => {
    const origin = { origin: "https://chat.example" };
    const forged = { authorization: "Bearer v1.someone.1.99999999999999.AAAA" };
    for (const wire of WIRES) {
      const none = await both(SEND, wire, sendTo(bob.devices[0], { messageId: randomBytes(16) }), { ...alice.devices[0], headers: origin });
      expect(none.native.code).toBe(wire === "connect" ? "unauthenticated" : "16");
      expect(none.native.message).toBe("missing authorization header (expected 'Bearer <token>' from Authenticate)");
      expect(none.native.cors).toMatch(/^https:\/\/chat\.example \| origin \| .*grpc-status/);
      expect(none.native).toEqual(none.viaConnect);
      const bad = await both(ACK, wire, () => toBinary(AckRequestSchema, create(AckRequestSchema, { sequences: [1n] })), {
        ...alice.devices[0],
        headers: forged,
      });
      expect(bad.native.message).toBe("token signature is invalid");
      expect(bad.native).toEqual(bad.viaConnect);
      const ok = await both(SEND, wire, sendTo(bob.devices[0], { messageId: randomBytes(16) }), {
        ...alice.devices[0],
        headers: { ...alice.devices[0].headers, ...origin },
      });
      expect(ok.native.code).toBe(wire === "connect" ? "ok" : "0");
      expect(ok.native.cors).toBeDefined();
      expect(ok.native.cors).toBe(ok.viaConnect.cors);
    }
    // Answered from the headers alone: a body that never ends is not waited for.
    const session = http2.connect(server.url);
    try {
      const req = session.request({ ":method": "POST", ":path": SEND, "content-type": CONTENT_TYPE.connect });
      req.write(Buffer.alloc(1024, 7)); // and never ends
      const [status, body] = await new Promise<[number, string]>((resolve, reject) => {
        let code = 0;
        const chunks: Buffer[] = [];
        req.on("response", (h) => (code = Number(h[":status"])));
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => resolve([code, Buffer.concat(chunks).toString()]));
        req.on("error", reject);
      });
      expect({ status, body: JSON.parse(body) }).toEqual({
        status: 401,
        body: { code: "unauthenticated", message: "missing authorization header (expected 'Bearer <token>' from Authenticate)" },
      });
    } finally {
      session.close();
    }
  });

  it("a revoked device's Send and Ack are refused with the handler's message", async () => {
    const carol = await createTestAccount(server.url, "unary-carol", { devices: 2 });
    const gone = carol.devices[1];
    const change = await revokeDeviceChange(
      carol.provider,
      carol.deviceList,
      { deviceId: carol.devices[0].address.deviceId, signingSeed: carol.devices[0].keys.signingSeed },
      gone.address.deviceId,
      Date.now(),
    );
    await carol.devices[0].directory.revokeDevice({ deviceList: change });
    for (const wire of WIRES) {
      const send = await both(SEND, wire, sendTo(bob.devices[0], { messageId: randomBytes(16) }), gone);
      expect(send.native.code).toBe(wire === "connect" ? "unauthenticated" : "16");
      expect(send.native.message).toMatch(/revoked/);
      expect(send.native).toEqual(send.viaConnect);
      const ack = await both(ACK, wire, () => toBinary(AckRequestSchema, create(AckRequestSchema, { sequences: [1n] })), gone);
      expect(ack.native).toEqual(ack.viaConnect);
      expect(ack.native.message).toMatch(/revoked/);
    }
  });
});

/** A gRPC/gRPC-Web call whose body is given framed (for misframed bodies). */
function rawEnveloped(path: string, wire: Wire, body: Buffer, device: TestDevice, viaConnectNode: boolean): Promise<{ code: string; message?: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(server.url);
    session.on("error", reject);
    const h: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": path, "content-type": CONTENT_TYPE[wire], te: "trailers", ...device.headers };
    if (viaConnectNode) h["grpc-timeout"] = "60S";
    const req = session.request(h);
    const out: { code: string; message?: string } = { code: "" };
    const status = (s: http2.IncomingHttpHeaders) => {
      if (s["grpc-status"] !== undefined) out.code = String(s["grpc-status"]);
      if (s["grpc-message"] !== undefined) out.message = decodeURIComponent(String(s["grpc-message"]));
    };
    req.on("response", status);
    req.on("trailers", status);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      const text = Buffer.concat(chunks).toString("latin1");
      const m = /grpc-status: (\d+)\r\n(?:grpc-message: (.*)\r\n)?/.exec(text);
      if (m) [out.code, out.message] = [m[1], m[2] ? decodeURIComponent(m[2]) : undefined];
      resolve(out);
    });
    req.on("error", reject);
    req.end(body);
  });
}
