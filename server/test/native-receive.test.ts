/**
 * Receive served on the native HTTP/2 stream (delivery/native-delivery.ts) answers byte-for-byte
 * like connect-node: the same request is sent once as the lean path takes it and once with a
 * deadline header (which sends it on to connect-node), over Connect, gRPC and gRPC-Web on h2,
 * and the frames, codes and headers that matter are compared: mail, Drained, errors before
 * the first message (gRPC: trailers-only), and the end of a stream whose token expires.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http2 from "node:http2";
import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ReceiveRequestSchema, ReceiveResponseSchema, SendEntrySchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { createTestAccount, deliveryClient, envelope, startTestNats, startTestServer, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { revokeDeviceChange } from "@sealpost/client/directory";
import { Code } from "@connectrpc/connect";
import { Inbox, waitUntil } from "./delivery-helpers.js";

let nats: TestNats;
let server: RunningServer;
let alice: TestAccount;
let bob: TestAccount;

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url);
  [alice, bob] = await Promise.all([createTestAccount(server.url, "lean-alice"), createTestAccount(server.url, "lean-bob")]);
  for (let i = 0; i < 3; i++) {
    await deliveryClient(alice.devices[0], server.url).send({
      messageId: randomBytes(16),
      sharedBody: Buffer.from(`body ${i}`),
      entries: [create(SendEntrySchema, { device: create(DeviceAddressSchema, bob.devices[0].address), entry: Buffer.from(`entry ${i}`) })],
    });
  }
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
});

type Wire = "connect" | "grpc" | "grpc-web";
const CONTENT_TYPE: Record<Wire, string> = { connect: "application/connect+proto", grpc: "application/grpc+proto", "grpc-web": "application/grpc-web+proto" };

interface Answer {
  status: number;
  contentType: string;
  /** gRPC status from headers (trailers-only) or trailers; gRPC-Web from its trailer frame; Connect from end-stream JSON. */
  code: string;
  message?: string;
  trailersOnly: boolean;
  events: string[];
}

/** One Receive over h2; stops after Drained (or the end) and reads the answer's shape. */
function receive(wire: Wire, body: Uint8Array, headers: Record<string, string>, viaConnectNode: boolean, untilEnd = false, live?: Answer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(server.url);
    session.on("error", reject);
    const h: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": "/sealpost.delivery.v1.DeliveryService/Receive",
      "content-type": CONTENT_TYPE[wire],
      ...headers,
    };
    if (wire === "grpc") h.te = "trailers";
    // A deadline header sends the call on to connect-node (native-stream.ts takes none).
    if (viaConnectNode) h[wire === "connect" ? "connect-timeout-ms" : "grpc-timeout"] = wire === "connect" ? "60000" : "60S";
    const req = session.request(h);
    const answer: Answer = live ?? { status: 0, contentType: "", code: "", trailersOnly: false, events: [] };
    let buf = Buffer.alloc(0);
    const finish = () => {
      session.close();
      resolve(answer);
    };
    req.on("response", (rh, flags) => {
      answer.status = Number(rh[":status"]);
      answer.contentType = String(rh["content-type"]);
      if (rh["grpc-status"] !== undefined) {
        answer.trailersOnly = !!(flags & http2.constants.NGHTTP2_FLAG_END_STREAM);
        answer.code = String(rh["grpc-status"]);
        answer.message = rh["grpc-message"] ? decodeURIComponent(String(rh["grpc-message"])) : undefined;
      }
    });
    req.on("trailers", (t) => {
      answer.code = String(t["grpc-status"]);
      answer.message = t["grpc-message"] ? decodeURIComponent(String(t["grpc-message"])) : undefined;
    });
    req.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
        const flags = buf[0];
        const payload = buf.subarray(5, 5 + buf.readUInt32BE(1));
        buf = buf.subarray(5 + payload.length);
        if (flags & 0x80) {
          const text = payload.toString();
          answer.code = /grpc-status: (\d+)/.exec(text)![1];
          const m = /grpc-message: (.*)\r\n/.exec(text);
          answer.message = m ? decodeURIComponent(m[1]) : undefined;
        } else if (flags & 0x02) {
          const j = JSON.parse(payload.toString()) as { error?: { code: string; message: string } };
          answer.code = j.error?.code ?? "ok";
          answer.message = j.error?.message;
        } else {
          const ev = fromBinary(ReceiveResponseSchema, payload).event;
          answer.events.push(
            ev.case === "message"
              ? `message ${ev.value.sequence} ${Buffer.from(ev.value.entry).toString()} ${Buffer.from(ev.value.sharedBody).toString()}`
              : String(ev.case),
          );
          if (ev.case === "drained" && !untilEnd) {
            req.close(http2.constants.NGHTTP2_CANCEL);
            finish();
          }
        }
      }
    });
    req.on("end", finish);
    req.on("error", () => finish());
    req.end(body);
  });
}

const request = (r: Partial<{ afterSequence: bigint; maxInFlight: number }> = {}) => envelope(toBinary(ReceiveRequestSchema, create(ReceiveRequestSchema, r)));

describe("Receive on the native stream answers as connect-node does", () => {
  for (const wire of ["connect", "grpc", "grpc-web"] as Wire[]) {
    it(`${wire}: the backlog, then Drained`, async () => {
      const lean = await receive(wire, request(), bob.devices[0].headers, false);
      const viaConnect = await receive(wire, request(), bob.devices[0].headers, true);
      expect(lean.events).toHaveLength(4);
      expect(lean.events.slice(0, 3).map((e) => e.split(" ").slice(2).join(" "))).toEqual(["entry 0 body 0", "entry 1 body 1", "entry 2 body 2"]);
      expect(lean.events[3]).toBe("drained");
      expect(lean).toEqual(viaConnect);
    });

    it(`${wire}: an invalid request is answered before any message, alike`, async () => {
      const lean = await receive(wire, request({ maxInFlight: 1_000_000 }), bob.devices[0].headers, false);
      const viaConnect = await receive(wire, request({ maxInFlight: 1_000_000 }), bob.devices[0].headers, true);
      expect(lean.code).toBe(wire === "connect" ? "invalid_argument" : "3");
      expect(lean.message).toMatch(/^max_in_flight 1000000 exceeds the server's max_in_flight/);
      // gRPC: trailers-only (one HEADERS frame with END_STREAM); connect-node sends headers,
      // then trailers. Both are valid gRPC; every client reads them alike.
      if (wire === "grpc") expect(lean.trailersOnly).toBe(true);
      expect({ ...lean, trailersOnly: false }).toEqual({ ...viaConnect, trailersOnly: false });
    });

    it(`${wire}: undecodable requests, compressed flags and wrong message counts are answered alike`, async () => {
      for (const body of [envelope(Buffer.from([0x0a, 0x7f, 1])), envelope(Buffer.from([0x08]), 1), Buffer.alloc(0), Buffer.concat([request(), request()])]) {
        const lean = await receive(wire, body, bob.devices[0].headers, false);
        const viaConnect = await receive(wire, body, bob.devices[0].headers, true);
        expect({ code: lean.code, message: lean.message, events: lean.events }).toEqual({
          code: viaConnect.code,
          message: viaConnect.message,
          events: viaConnect.events,
        });
      }
    });
  }

  for (const wire of ["connect", "grpc", "grpc-web"] as Wire[]) {
    it(`${wire}: a stream replaced by a newer one gets Replaced and ends OK, with the status in trailers`, async () => {
      const ends: Answer[] = [];
      for (const viaConnectNode of [false, true]) {
        const old: Answer = { status: 0, contentType: "", code: "", trailersOnly: false, events: [] };
        const ended = receive(wire, request(), bob.devices[0].headers, viaConnectNode, true, old);
        await waitUntil("the old stream's Drained", () => old.events.includes("drained"));
        await receive(wire, request(), bob.devices[0].headers, viaConnectNode);
        ends.push(await ended);
      }
      const [lean, viaConnect] = ends;
      expect(lean.events.slice(-2)).toEqual(["drained", "replaced"]);
      expect({ code: lean.code, trailersOnly: lean.trailersOnly }).toEqual({ code: wire === "connect" ? "ok" : "0", trailersOnly: false });
      expect(lean).toEqual(viaConnect);
    });
  }

  it("a revoked token's device is refused with the handler's message (the gate passes valid tokens on)", async () => {
    const carol = await createTestAccount(server.url, "lean-carol", { devices: 2 });
    const gone = carol.devices[1];
    const change = await revokeDeviceChange(
      carol.provider,
      carol.deviceList,
      { deviceId: carol.devices[0].address.deviceId, signingSeed: carol.devices[0].keys.signingSeed },
      gone.address.deviceId,
      Date.now(),
    );
    await carol.devices[0].directory.revokeDevice({ deviceList: change });
    const lean = await receive("grpc", request(), gone.headers, false);
    expect({ code: lean.code, trailersOnly: lean.trailersOnly }).toEqual({ code: "16", trailersOnly: true });
    expect(lean.message).toMatch(/revoked/);
  });
});

describe("instance shutdown", () => {
  it("ends every open Receive stream UNAVAILABLE so its client goes to another instance, and nothing stays open", async () => {
    const leaving = await startTestServer(nats.url);
    const dave = await createTestAccount(leaving.url, "lean-dave", { devices: 3 });
    const inboxes = dave.devices.map((d) => new Inbox(deliveryClient(d, leaving.url)));
    await Promise.all(inboxes.map((i) => i.waitDrained()));
    await leaving.close();
    for (const inbox of inboxes) {
      const err = await inbox.done;
      expect({ code: err?.code, message: err?.rawMessage }).toEqual({ code: Code.Unavailable, message: "server shutting down; reconnect" });
    }
  });
});
