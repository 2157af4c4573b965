/**
 * Malformed framing on raw sockets: Connect/gRPC/gRPC-Web envelopes with bad flags, declared
 * lengths up to 2^32-1, truncated frames, extra frames, early close, stream resets and
 * silent half-open requests, plus raw HTTP/1.1 with huge Content-Length and garbage. The
 * server must answer every request it can answer with a proper code (never INTERNAL), survive every connection it cannot, stay healthy, keep its
 * heap bounded across rounds, and leave stored state alone.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { connect as netConnect } from "node:net";
import { randomBytes } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { create, toBinary } from "@bufbuild/protobuf";
import { HealthCheckRequestSchema } from "@sealpost/gen/grpc/health/v1/health_pb.js";
import { AckRequestSchema, ReceiveRequestSchema, SendEntrySchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { GetDeviceListRequestSchema } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import {
  createTestAccount,
  deliveryClient,
  envelope,
  isRpcCode,
  rawCall,
  reliabilityProfile,
  startTestNats,
  startTestServer,
  type RawProtocol,
  type TestAccount,
  type TestNats,
} from "@sealpost/test-support";
import type { RunningServer } from "../../src/server.js";
import { errorCollectingLogger, expectServing, printOutcomes } from "./fuzz-helpers.js";

const profile = reliabilityProfile();

let nats: TestNats;
let server: RunningServer;
let alice: TestAccount;
let bob: TestAccount;
const errorLogs: string[] = [];
const outcomes = new Map<string, number>();

beforeAll(async () => {
  nats = await startTestNats();
  const log = errorCollectingLogger(errorLogs);
  server = await startTestServer(nats.url, {}, { log });
  const tag = randomBytes(3).toString("hex");
  [alice, bob] = await Promise.all([createTestAccount(server.url, `frame-a-${tag}`), createTestAccount(server.url, `frame-b-${tag}`)]);
  for (let i = 0; i < 2; i++) {
    await deliveryClient(alice.devices[0], server.url).send({
      messageId: randomBytes(16),
      sharedBody: randomBytes(30),
      entries: [create(SendEntrySchema, { device: create(DeviceAddressSchema, bob.devices[0].address), entry: randomBytes(10) })],
    });
  }
}, 120_000);

afterAll(async () => {
  printOutcomes(`fuzz-framing outcomes (profile ${profile.name})`, outcomes, 28);
  await server?.close();
  await nats?.stop();
});

const healthy = () => expectServing(server.url);

async function bobsMail(): Promise<string[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 15_000);
  const out: string[] = [];
  try {
    for await (const ev of deliveryClient(bob.devices[0], server.url).receive({}, { signal: abort.signal })) {
      if (ev.event.case === "drained") break;
      if (ev.event.case === "message") out.push(String(ev.event.value.sequence));
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return out;
}

interface Target {
  path: string;
  streaming: boolean;
  /** A valid request body. */
  valid: () => Uint8Array;
  auth: boolean;
}

const targets = (): Target[] => [
  { path: "/grpc.health.v1.Health/Check", streaming: false, valid: () => toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema)), auth: false },
  {
    path: "/sealpost.directory.v1.DirectoryService/GetDeviceList",
    streaming: false,
    valid: () => toBinary(GetDeviceListRequestSchema, create(GetDeviceListRequestSchema, { accountId: bob.accountId })),
    auth: false,
  },
  {
    path: "/sealpost.delivery.v1.DeliveryService/Ack",
    streaming: false,
    valid: () => toBinary(AckRequestSchema, create(AckRequestSchema, { sequences: [1n] })),
    auth: true,
  },
  {
    path: "/sealpost.delivery.v1.DeliveryService/Receive",
    streaming: true,
    valid: () => toBinary(ReceiveRequestSchema, create(ReceiveRequestSchema, { maxInFlight: 1 })),
    auth: true,
  },
  { path: "/sealpost.directory.v1.DirectoryService/WatchDirectory", streaming: true, valid: () => new Uint8Array([10, 3, 97, 98, 99]), auth: true },
  { path: "/sealpost.nope.v1.Nope/Nothing", streaming: false, valid: () => new Uint8Array(0), auth: false },
];

const frameCase = fc.record({
  target: fc.nat(5),
  protocol: fc.constantFrom<RawProtocol>("connect-proto-h2", "connect-json-h1", "grpc", "grpc-web"),
  flags: fc.oneof(fc.constant(0), fc.constantFrom(1, 2, 0x80, 0x81, 0xff), fc.nat(255)),
  declared: fc.oneof(
    fc.constant("actual" as const),
    fc.constantFrom(0, 1, 2 ** 31, 2 ** 32 - 1, 5 * 1024 * 1024 + 1, 2 ** 24),
    fc.constantFrom("plus1" as const, "minus1" as const),
  ),
  payload: fc.oneof(fc.constant("valid" as const), fc.uint8Array({ maxLength: 64 })),
  extraFrames: fc.nat(2),
  truncateAt: fc.option(fc.nat(40), { nil: undefined }),
  close: fc.constantFrom<"end" | "destroy" | "reset" | "hold">("end", "end", "end", "destroy", "reset", "hold"),
  withToken: fc.boolean(),
});

type FrameCase = typeof frameCase extends fc.Arbitrary<infer T> ? T : never;

async function runFrameCase(c: FrameCase): Promise<void> {
  const t = targets()[c.target];
  const payload = c.payload === "valid" ? t.valid() : c.payload;
  const declared =
    c.declared === "actual"
      ? payload.length
      : c.declared === "plus1"
        ? payload.length + 1
        : c.declared === "minus1"
          ? Math.max(0, payload.length - 1)
          : c.declared;
  let body: Buffer = envelope(payload, c.flags, declared);
  for (let i = 0; i < c.extraFrames; i++) body = Buffer.concat([body, envelope(payload, 0)]);
  const headers: Record<string, string> = {};
  // Alice's token: Bob's mailbox is the state that must stay untouched (a valid Ack of
  // sequence 1 with Bob's own token would legitimately delete his mail).
  if (c.withToken && t.auth) headers.authorization = `Bearer ${alice.devices[0].token}`;
  const out = await rawCall({
    baseUrl: server.url,
    path: t.path,
    protocol: c.protocol,
    streaming: t.streaming,
    // Connect unary has no envelope: send the envelope bytes as the body (garbage to it).
    body,
    headers,
    truncateAt: c.truncateAt,
    close: c.close,
    timeoutMs: c.close === "hold" ? 300 : 10_000,
  });
  // Undecodable protobuf and a compressed flag without a negotiated encoding are
  // INVALID_ARGUMENT (parse-errors.ts); INTERNAL is never right for a client's bytes.
  outcomes.set(out.code, (outcomes.get(out.code) ?? 0) + 1);
  if (c.close !== "end") return; // hung up or silent: nothing to answer
  // A complete request (however malformed) gets an answer with a code, except an
  // authenticated stream that is legitimately open and waiting.
  if (out.code === "timeout" && t.streaming && c.withToken) return;
  expect(out.code === "timeout", `${c.protocol} ${t.path}: no answer to a complete request`).toBe(false);
  // HTTP 404 for an unknown procedure is the protocols' UNIMPLEMENTED (clients map it so);
  // 415 answers a content-type mix-up on HTTP/1.1.
  if (/^http-(404|415)$/.test(out.code)) return;
  expect(isRpcCode(out.code) || out.code === "reset", `${c.protocol} ${t.path}: ${out.code} ${out.message ?? ""}`).toBe(true);
  expect(out.code, `${c.protocol} ${t.path}: ${out.message}`).not.toBe("internal");
}

/** Raw HTTP/1.1 abuse: lying Content-Length, garbage request lines, oversized headers. */
const rawHttpCase = fc.record({
  kind: fc.constantFrom("huge-length", "garbage", "big-header", "bad-chunk", "preface-then-garbage"),
  noise: fc.uint8Array({ maxLength: 200 }),
});

function rawHttp(c: { kind: string; noise: Uint8Array }): Promise<string> {
  const port = server.port;
  const head = (extra: string) =>
    `POST /sealpost.delivery.v1.DeliveryService/GetLimits HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/proto\r\nConnect-Protocol-Version: 1\r\n${extra}\r\n`;
  const payloads: Record<string, Buffer> = {
    "huge-length": Buffer.concat([Buffer.from(head("Content-Length: 2147483648\r\n")), Buffer.from(c.noise)]),
    garbage: Buffer.concat([Buffer.from(c.noise), Buffer.from("\r\n\r\n")]),
    "big-header": Buffer.from(head(`X-Big: ${"a".repeat(100_000)}\r\n`)),
    "bad-chunk": Buffer.concat([Buffer.from(head("Transfer-Encoding: chunked\r\n")), Buffer.from("fffffffffff\r\n"), Buffer.from(c.noise)]),
    "preface-then-garbage": Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from(c.noise)]),
  };
  return new Promise((resolve) => {
    const sock = netConnect(port, "127.0.0.1");
    let got = "";
    const timer = setTimeout(() => finish("timeout"), 5_000);
    function finish(how: string) {
      clearTimeout(timer);
      sock.destroy();
      resolve(how);
    }
    sock.on("data", (d) => (got += d.toString("latin1")));
    sock.on("error", () => finish("reset"));
    sock.on("close", () => finish(got.startsWith("HTTP/1.1 ") ? got.slice(9, 12) : got.length ? "h2-frames" : "closed"));
    sock.write(payloads[c.kind]);
    sock.end();
  });
}

describe(`malformed framing (profile ${profile.name}, ${profile.framingRuns} cases per round)`, () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const heaps: number[] = [];
  let mailBefore: string[] = [];

  it("baseline state", async () => {
    mailBefore = await bobsMail();
    expect(mailBefore).toHaveLength(2);
  });

  it("a client that resets a Receive stream before its request is complete is not logged as a server error", async () => {
    // Regression: the half-read request failed with Node's "Premature close" and the call
    // log reported it as an unexpected server error (level error, INTERNAL).
    const before = errorLogs.length;
    for (const close of ["reset", "destroy"] as const) {
      for (const protocol of ["connect-proto-h2", "grpc"] as const) {
        const body = envelope(toBinary(ReceiveRequestSchema, create(ReceiveRequestSchema, { maxInFlight: 1 })));
        await rawCall({
          baseUrl: server.url,
          path: "/sealpost.delivery.v1.DeliveryService/Receive",
          protocol,
          streaming: true,
          body,
          truncateAt: 3,
          close,
          headers: { authorization: `Bearer ${bob.devices[0].token}` },
        });
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    await healthy();
    expect(errorLogs.slice(before)).toEqual([]);
  });

  const rounds = profile.name === "full" ? 4 : 3;
  for (let r = 1; r <= rounds; r++) {
    it(`round ${r}: envelopes with bad flags, huge declared lengths, truncation, early close, resets`, {
      timeout: profile.name === "full" ? 600_000 : 120_000,
    }, async () => {
      await fc.assert(fc.asyncProperty(frameCase, runFrameCase), { numRuns: profile.framingRuns, endOnFailure: true, seed: 1000 + r });
      await healthy();
      await fc.assert(
        fc.asyncProperty(rawHttpCase, async (c) => {
          const how = await rawHttp(c);
          outcomes.set(`raw-http ${c.kind} -> ${how}`, (outcomes.get(`raw-http ${c.kind} -> ${how}`) ?? 0) + 1);
          expect(how, c.kind).not.toBe("timeout");
        }),
        { numRuns: Math.ceil(profile.framingRuns / 3), endOnFailure: true, seed: 2000 + r },
      );
      await healthy();
      // Round 1 warms caches; later rounds must not grow the heap.
      await new Promise((res) => setTimeout(res, 200));
      gc();
      heaps.push(process.memoryUsage().heapUsed / 2 ** 20);
    });
  }

  it("afterwards: healthy, no unexpected errors logged, heap bounded, stored state unchanged", async () => {
    await healthy();
    expect(errorLogs).toEqual([]);
    process.stdout.write(`fuzz-framing heap after GC per round (MiB): ${heaps.map((h) => h.toFixed(1)).join(" -> ")}\n`);
    expect(heaps[heaps.length - 1]).toBeLessThan(heaps[0] * 1.5 + 32);
    expect(await bobsMail()).toEqual(mailBefore);
  });
});
