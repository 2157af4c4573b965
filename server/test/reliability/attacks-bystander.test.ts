/**
 * The attacks of the security table, each at the volume that once hurt (eight gzip bombs at a
 * time, hundreds of stalled requests, a stream churn of thousands), against one server process
 * with its production limits, while a bystander (another account) keeps sending to a third
 * and receiving. Per attack the test checks the attacker gets the documented answer, every
 * bystander call succeeds, every bystander message arrives, and the server's RSS stays
 * bounded; and it prints the bystander's latency and the server's memory beside an idle
 * baseline (docs/OPERATIONS.md quotes a run). No timing assertions: the box is shared.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import { gzipSync } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { SendEntrySchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import {
  createTestAccount,
  deliveryClient,
  envelope,
  rawCall,
  spawnServerProcess,
  startTestNats,
  type ServerProcess,
  type TestAccount,
  type TestNats,
} from "@sealpost/test-support";

/** How long each attack runs while the bystander is measured. */
const ATTACK_MS = 2_000;
/** RSS the server may gain over its idle level during one attack (it once reached 1 GiB). */
const RSS_BUDGET_MIB = 192;

let nats: TestNats;
let server: ServerProcess;
let sender: TestAccount;
let receiver: TestAccount;
let mallory: TestAccount;
const report: string[] = [];

beforeAll(async () => {
  nats = await startTestNats();
  // Production limits: 30 accounts per address per hour, 30 one-time prekeys per device per minute.
  server = await spawnServerProcess({
    NATS_URL: nats.url,
    SEALPOST_ACCOUNTS_PER_ADDRESS_PER_HOUR: "30",
    SEALPOST_ONE_TIME_PREKEYS_PER_DEVICE_PER_MINUTE: "30",
  });
  [sender, receiver, mallory] = await Promise.all([
    createTestAccount(server.url, "bystander-sender"),
    createTestAccount(server.url, "bystander-receiver", { oneTimePrekeys: 100 }),
    createTestAccount(server.url, "mallory", { devices: 2 }),
  ]);
}, 120_000);
afterAll(async () => {
  process.stdout.write(`\nbystander during attacks (server RSS: idle -> peak):\n${report.join("\n")}\n`);
  const errors = server?.logs.filter((l) => /"level":"error"/.test(l)) ?? [];
  if (errors.length) process.stdout.write(`server errors:\n${errors.slice(0, 20).join("\n")}\n`);
  await server?.stop();
  await nats?.stop();
});

const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))![1]) / 1024;

interface Measured {
  sends: number;
  failures: string[];
  p50: number;
  p99: number;
  rssIdle: number;
  rssPeak: number;
}

/**
 * Runs `attack` (which should stop by itself at `until`) beside the bystander: one Send every
 * 10 ms from `sender` to `receiver`, whose Receive stream is open and acks as it goes; the
 * latency is send -> arrival on the receiver's stream. Returns when every sent message arrived.
 */
async function withBystander(attack: (until: number) => Promise<void>): Promise<Measured> {
  const to = receiver.devices[0];
  const send = deliveryClient(sender.devices[0], server.url);
  const recv = deliveryClient(to, server.url);
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const failures: string[] = [];
  const ac = new AbortController();
  let drained!: () => void;
  const isDrained = new Promise<void>((r) => (drained = r));
  const reading = (async () => {
    const acks: bigint[] = [];
    try {
      for await (const ev of recv.receive({}, { signal: ac.signal })) {
        if (ev.event.case === "drained") drained();
        if (ev.event.case !== "message") continue;
        const id = Buffer.from(ev.event.value.messageId).toString("hex");
        const t0 = sentAt.get(id);
        if (t0 !== undefined) {
          latencies.push(performance.now() - t0);
          sentAt.delete(id);
        }
        acks.push(ev.event.value.sequence);
        if (acks.length >= 16) await recv.ack({ sequences: acks.splice(0) });
      }
    } catch (err) {
      if (!ac.signal.aborted) failures.push(`receive: ${ConnectError.from(err).message}`);
    }
    if (acks.length) await recv.ack({ sequences: acks }).catch(() => {});
  })();
  await isDrained;
  const rssIdle = rssMiB();
  let rssPeak = rssIdle;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB())), 50);
  const until = Date.now() + ATTACK_MS;
  let sends = 0;
  const bystander = (async () => {
    while (Date.now() < until) {
      const messageId = randomBytes(16);
      sentAt.set(messageId.toString("hex"), performance.now());
      try {
        const res = await send.send({
          messageId,
          sharedBody: randomBytes(256),
          entries: [create(SendEntrySchema, { device: create(DeviceAddressSchema, to.address), entry: randomBytes(64) })],
        });
        if (res.outcome.case !== "stored") failures.push(`send: ${res.outcome.case}`);
        sends++;
      } catch (err) {
        failures.push(`send: ${ConnectError.from(err).message}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await Promise.all([attack(until), bystander]);
  clearInterval(sampler);
  const deadline = Date.now() + 30_000;
  while (sentAt.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (sentAt.size) failures.push(`${sentAt.size} bystander messages not delivered`);
  ac.abort();
  await reading;
  const s = latencies.sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
  return { sends, failures, p50: q(50), p99: q(99), rssIdle, rssPeak };
}

function record(name: string, m: Measured, attacker: string): void {
  report.push(
    `  ${name.padEnd(44)} bystander ${m.sends} sends, p50 ${m.p50.toFixed(1)} ms, p99 ${m.p99.toFixed(1)} ms; RSS ${m.rssIdle.toFixed(0)} -> ${m.rssPeak.toFixed(0)} MiB; attacker: ${attacker}`,
  );
  expect(m.failures).toEqual([]);
  expect(m.sends).toBeGreaterThan(0);
  expect(m.rssPeak - m.rssIdle, `RSS grew ${(m.rssPeak - m.rssIdle).toFixed(0)} MiB`).toBeLessThan(RSS_BUDGET_MIB);
}

/** `workers` loops of `call` until `until`; counts each answer's code. */
async function loop(workers: number, until: number, call: () => Promise<string>): Promise<Map<string, number>> {
  const codes = new Map<string, number>();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() < until) {
        const c = await call();
        codes.set(c, (codes.get(c) ?? 0) + 1);
      }
    }),
  );
  return codes;
}

const show = (codes: Map<string, number>) => [...codes].map(([c, n]) => `${n} ${c}`).join(", ");
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e) => Code[ConnectError.from(e).code],
  );

describe("a bystander during each attack", () => {
  it("idle (the baseline)", async () => {
    const m = await withBystander(async (until) => {
      while (Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    });
    record("idle", m, "none");
  });

  it("eight gzip bombs at a time without a token (5 KB inflating to 5 MiB each)", async () => {
    const bomb = gzipSync(Buffer.alloc(5 * 1024 * 1024));
    let codes = new Map<string, number>();
    const m = await withBystander(async (until) => {
      codes = await loop(
        8,
        until,
        async () =>
          (
            await rawCall({
              baseUrl: server.url,
              path: "/sealpost.delivery.v1.DeliveryService/Send",
              protocol: "connect-proto-h2",
              body: bomb,
              headers: { "content-encoding": "gzip" },
            })
          ).code,
      );
    });
    expect([...codes.keys()]).toEqual(["unauthenticated"]);
    record("gzip bombs, no token (8 at a time)", m, show(codes));
  });

  it("eight gzip bombs at a time with a valid token", async () => {
    const bomb = gzipSync(Buffer.alloc(5 * 1024 * 1024));
    let codes = new Map<string, number>();
    const m = await withBystander(async (until) => {
      codes = await loop(
        8,
        until,
        async () =>
          (
            await rawCall({
              baseUrl: server.url,
              path: "/sealpost.delivery.v1.DeliveryService/Ack",
              protocol: "connect-proto-h2",
              body: bomb,
              headers: { "content-encoding": "gzip", ...mallory.devices[0].headers },
            })
          ).code,
      );
    });
    expect([...codes.keys()]).toEqual(["resource_exhausted"]);
    record("gzip bombs, valid token (8 at a time)", m, show(codes));
  });

  it("300 HTTP/2 requests that never finish and 100 HTTP/1.1 connections trickling headers", async () => {
    const m = await withBystander(async (until) => {
      const session = http2.connect(server.url);
      session.on("error", () => {});
      const streams = Array.from({ length: 300 }, () => {
        const s = session.request({
          ":method": "POST",
          ":path": "/sealpost.delivery.v1.DeliveryService/Send",
          "content-type": "application/proto",
          "connect-protocol-version": "1",
          ...mallory.devices[0].headers,
        });
        s.on("error", () => {});
        s.write(Buffer.from([0x0a]));
        return s;
      });
      const { port } = new URL(server.url);
      const sockets = Array.from({ length: 100 }, () => {
        const sock = net.connect(Number(port), "127.0.0.1");
        sock.on("error", () => {});
        sock.write("POST /sealpost.delivery.v1.DeliveryService/Send HTTP/1.1\r\nHost: x\r\n");
        return sock;
      });
      const drip = setInterval(() => sockets.forEach((s) => s.write("X-Slow: 1\r\n")), 500);
      await new Promise((r) => setTimeout(r, until - Date.now()));
      clearInterval(drip);
      streams.forEach((s) => s.close());
      sockets.forEach((s) => s.destroy());
      session.destroy();
    });
    record("400 stalled requests (h2 bodies, h1 headers)", m, "held open");
  });

  it("undecodable requests from eight loops", async () => {
    let codes = new Map<string, number>();
    const m = await withBystander(async (until) => {
      codes = await loop(
        8,
        until,
        async () =>
          (
            await rawCall({
              baseUrl: server.url,
              path: "/sealpost.delivery.v1.DeliveryService/Ack",
              protocol: "grpc",
              body: envelope(Buffer.from([0x0a, 0x7f, 1, 2, 3])),
              headers: mallory.devices[0].headers,
            })
          ).code,
      );
    });
    expect([...codes.keys()]).toEqual(["invalid_argument"]);
    record("undecodable protobuf (8 loops)", m, show(codes));
  });

  it("Receive churn: one device opens stream after stream", async () => {
    let codes = new Map<string, number>();
    const internals: string[] = [];
    const client = deliveryClient(mallory.devices[0], server.url);
    const m = await withBystander(async (until) => {
      codes = await loop(8, until, async () => {
        const ac = new AbortController();
        try {
          for await (const ev of client.receive({}, { signal: ac.signal })) if (ev.event.case !== "message") return ev.event.case ?? "none";
          return "ended";
        } catch (err) {
          const e = ConnectError.from(err);
          // nghttp2's rapid-reset protection (CVE-2023-44487) ends a connection that resets
          // streams faster than it allows, with GOAWAY INTERNAL_ERROR; its queued streams are refused.
          if (/Session closed with error code 2|NGHTTP2_REFUSED_STREAM/.test(e.message)) return "connection cut";
          if (e.code === Code.Internal) internals.push(e.message);
          return Code[e.code];
        } finally {
          ac.abort();
        }
      });
    });
    expect(internals).toEqual([]);
    expect(codes.get("ResourceExhausted")).toBeGreaterThan(0);
    record("Receive churn for one device (8 loops)", m, show(codes));
  });

  it("one-time prekey drain of the bystander's receiver", async () => {
    let codes = new Map<string, number>();
    let withKey = 0;
    const m = await withBystander(async (until) => {
      codes = await loop(8, until, async () => {
        try {
          const r = await mallory.devices[0].directory.claimKeyBundles({ accountId: receiver.accountId });
          if (r.bundles[0]?.oneTimePrekey) withKey++;
          return "ok";
        } catch (err) {
          return Code[ConnectError.from(err).code];
        }
      });
    });
    // The window is shared by every claimer: at most 30 keys a minute (this test and nothing else claims).
    expect(withKey).toBeLessThanOrEqual(30);
    expect((await receiver.devices[0].directory.getPrekeyCount({})).oneTimePrekeyCount).toBeGreaterThanOrEqual(70);
    record("one-time prekey drain (8 loops)", m, `${show(codes)}; ${withKey} one-time keys handed out`);
  });

  it("account creation flood from one address", async () => {
    let codes = new Map<string, number>();
    let n = 0;
    const m = await withBystander(async (until) => {
      codes = await loop(4, until, () => codeOf(createTestAccount(server.url, `flood-${++n}`, { oneTimePrekeys: 1 })));
    });
    // 3 accounts were made in beforeAll: 27 more at most from this address this hour.
    expect(codes.get("ok") ?? 0).toBeLessThanOrEqual(27);
    expect(codes.get("ResourceExhausted")).toBeGreaterThan(0);
    record("account creation flood (4 loops)", m, show(codes));
  });

  it("a Send flood between the attacker's own devices", async () => {
    let codes = new Map<string, number>();
    const client = deliveryClient(mallory.devices[0], server.url);
    const self = create(SendEntrySchema, { device: create(DeviceAddressSchema, mallory.devices[1].address), entry: randomBytes(64) });
    const m = await withBystander(async (until) => {
      codes = await loop(16, until, () => codeOf(client.send({ messageId: randomBytes(16), sharedBody: randomBytes(1024), entries: [self] })));
    });
    record("Send flood to its own device (16 loops)", m, show(codes));
  });
});
