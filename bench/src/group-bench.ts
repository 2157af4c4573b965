/**
 * Group benchmark: one group send to 100 member devices under sender keys, side by side with
 * `@signalapp/libsignal-client`'s groupEncrypt/groupDecrypt in the same run. Writes
 * bench/results/group.json.
 *
 *   npx tsx bench/src/group-bench.ts [--quick]
 *
 * Figures (median of interleaved samples):
 *   group_encrypt        sender-key encrypt of a 1 KiB text (incl. store load/save), ops/s
 *   group_send_100       everything the sender does for one message to 100 devices: encrypt
 *                        once + build and serialize the SendRequest (100 empty entries), ops/s;
 *                        plus the SendRequest size in bytes
 *   group_decrypt        one receiving device: verify + decrypt + parse, ops/s (x100 = what the
 *                        100 devices spend together)
 *   pairwise_fanout_100  for contrast: the same message as a 1:1-style fan-out (sealed body +
 *                        100 Double Ratchet entries), ops/s and SendRequest bytes
 *   server_send_100      through a real server (own nats-server, 50 accounts x 2 devices):
 *                        encrypt + Send RPC until stored in all 100 mailboxes, latency p50/p90
 *                        for the group body and for the pairwise fan-out (skip: --no-server)
 */
import {
  addressKey,
  createDeviceIdentity,
  createMemoryGroupStores,
  createMemoryStores,
  generateOneTimePrekeys,
  generatePrekeyBatch,
  GroupCipher,
  groupContent,
  SessionCipher,
  toDeviceIdentity,
  toKemPrekey,
  toOneTimePrekey,
  toSignedPrekey,
  type DeviceRef,
} from "@sealpost/client/protocol";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendRequestSchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { ContentSchema, TextSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createNobleProvider, createNodeProvider, type CryptoProvider } from "@sealpost/client/crypto";
import { KeyBundleSchema } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { createClient } from "@connectrpc/connect";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { createTestAccount, startTestNats, startTestServer } from "@sealpost/test-support";
import { LibsignalDevice } from "./crypto-libsignal.js";

const SMOKE = process.argv.includes("--smoke");
const QUICK = SMOKE || process.argv.includes("--quick");
const SAMPLES = SMOKE ? 1 : QUICK ? 3 : 7;
const SAMPLE_MS = SMOKE ? 40 : QUICK ? 250 : 600;
const WARMUP_MS = SMOKE ? 20 : QUICK ? 150 : 400;
/** Pre-made messages for the decrypt figures; a fresh receiver starts over when they run out. */
const POOL = SMOKE ? 100 : 2000;
const DEVICES = 100;
const GROUP_ID = new Uint8Array(16).fill(0x42);
const TEXT = "x".repeat(1024);
const PAYLOAD = new Uint8Array(1024).map((_, i) => (i * 31) & 0xff);

interface Measured {
  opsPerSec: number;
  samples: number[];
}
interface Runner {
  op: () => Promise<void>;
  maxOps?: number;
}

/** Samples interleaved across implementations (A B C A B C ...), median reported. */
async function measureInterleaved(runners: Record<string, Runner>): Promise<Record<string, Measured>> {
  const names = Object.keys(runners);
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const run = async (r: Runner, budgetMs: number, record?: number[]) => {
    let n = 0;
    const start = performance.now();
    let now = start;
    while (now - start < budgetMs && n < (r.maxOps ?? Infinity)) {
      await r.op();
      n++;
      now = performance.now();
    }
    record?.push((n * 1000) / (now - start));
  };
  for (const name of names) await run(runners[name], WARMUP_MS);
  for (let s = 0; s < SAMPLES; s++) for (const name of names) await run(runners[name], SAMPLE_MS, samples[name]);
  return Object.fromEntries(
    names.map((name) => {
      const sorted = [...samples[name]].sort((a, b) => a - b);
      return [name, { opsPerSec: sorted[Math.floor(sorted.length / 2)], samples: samples[name].map((x) => Math.round(x)) }];
    }),
  );
}

const members: DeviceRef[] = Array.from({ length: DEVICES }, (_, i) => ({
  accountId: `member${String(Math.floor(i / 2)).padStart(3, "0")}`,
  deviceId: (i % 2) + 1,
}));
const SENDER = { accountId: "sender", deviceId: 1 };

function content(p: CryptoProvider) {
  return groupContent(GROUP_ID, { messageId: p.random(16), sentAtMs: 1n, body: { case: "text", value: create(TextSchema, { body: TEXT }) } });
}

function sendRequest(messageId: Uint8Array, sharedBody: Uint8Array, entries: { address: DeviceRef; entry: Uint8Array }[]): Uint8Array {
  return toBinary(
    SendRequestSchema,
    create(SendRequestSchema, { messageId, sharedBody, entries: entries.map((e) => ({ device: e.address, entry: e.entry })) }),
  );
}

/** A sender with its key distributed to `receivers` GroupCiphers (one per receiving device). */
async function sealpostGroup(p: CryptoProvider, receivers: number) {
  const sender = new GroupCipher(p, createMemoryGroupStores().senderKeys);
  const dist = await sender.distribution(GROUP_ID);
  const rx: GroupCipher[] = [];
  for (let i = 0; i < receivers; i++) {
    const r = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    await r.processDistribution(SENDER, dist);
    rx.push(r);
  }
  return { sender, rx };
}

async function sealpostSetups(p: CryptoProvider) {
  const enc = await sealpostGroup(p, 0);
  const send = await sealpostGroup(p, 0);
  const dec = await sealpostGroup(p, 1);
  const dist = await dec.sender.distribution(GROUP_ID);
  // A pool of messages made untimed; the receiver decrypts them in order.
  const pool: Uint8Array[] = [];
  for (let i = 0; i < POOL; i++) pool.push((await dec.sender.encrypt(GROUP_ID, content(p))).sharedBody);
  let next = 0;
  let rx = dec.rx[0];
  const empty = members.map((address) => ({ address, entry: new Uint8Array(0) }));
  let lastSendBytes = 0;
  return {
    group_encrypt: {
      async op() {
        await enc.sender.encrypt(GROUP_ID, content(p));
      },
    } as Runner,
    group_send_100: {
      async op() {
        const c = content(p);
        const { sharedBody } = await send.sender.encrypt(GROUP_ID, c);
        lastSendBytes = sendRequest(c.messageId, sharedBody, empty).length;
      },
    } as Runner,
    group_decrypt: {
      async op() {
        if (next === pool.length) {
          // Start over with a receiver that has the key at iteration 0 (amortized over the pool).
          rx = new GroupCipher(p, createMemoryGroupStores().senderKeys);
          await rx.processDistribution(SENDER, dist);
          next = 0;
        }
        await rx.decrypt(SENDER, pool[next++]);
      },
    } as Runner,
    sendBytes: () => lastSendBytes,
    /** All 100 receivers decrypt one message (a correctness check and a single timing). */
    async allDecrypt() {
      const g = await sealpostGroup(p, DEVICES);
      const { sharedBody } = await g.sender.encrypt(GROUP_ID, content(p));
      const t0 = performance.now();
      for (const r of g.rx) await r.decrypt(SENDER, sharedBody);
      return performance.now() - t0;
    },
  };
}

/** For contrast: the pairwise fan-out of the same message to 100 devices with sessions. */
async function pairwiseFanout(p: CryptoProvider) {
  const senderStores = createMemoryStores();
  await createDeviceIdentity(p, senderStores, 1, "bench", Date.now());
  const cipher = new SessionCipher(p, senderStores, SENDER);
  for (const m of members) {
    const stores = createMemoryStores();
    const { identity } = await createDeviceIdentity(p, stores, m.deviceId, "bench", Date.now());
    await generatePrekeyBatch(p, stores, { signedPrekeyId: 1, kemPrekeyId: 1, nowMs: Date.now() });
    const [otp] = await generateOneTimePrekeys(p, 1, 1, Date.now());
    await senderStores.identity.saveRemoteIdentity(addressKey(m), { signingKey: identity.signingKey, dhKey: identity.dhKey });
    const bundle = create(KeyBundleSchema, {
      identity: toDeviceIdentity(identity, "bench", 0n),
      signedPrekey: toSignedPrekey((await stores.signedPrekeys.load(1))!),
      kemPrekey: toKemPrekey((await stores.kemPrekeys.load(1))!),
      oneTimePrekey: toOneTimePrekey(otp),
    });
    await cipher.processBundle(m, bundle);
  }
  const c = create(ContentSchema, {
    sentAtMs: 1n,
    conversation: { kind: { case: "groupId", value: GROUP_ID } },
    body: { case: "text", value: create(TextSchema, { body: TEXT }) },
  });
  let lastBytes = 0;
  return {
    encrypt: () =>
      cipher.encryptForDevices(
        c,
        members.map((address) => ({ address })),
      ),
    runner: {
      async op() {
        const enc = await cipher.encryptForDevices(
          c,
          members.map((address) => ({ address })),
        );
        lastBytes = sendRequest(enc.messageId, enc.sharedBody, enc.entries).length;
      },
    } as Runner,
    bytes: () => lastBytes,
  };
}

async function libsignalSetups() {
  const a = new LibsignalDevice("alice", 1);
  let b = new LibsignalDevice("bob", 1);
  const distributionId = "d1b1a1c0-0000-4000-8000-000000000002";
  const dist = await a.createDistribution(distributionId);
  await b.processDistribution(a, dist);
  const pool: Uint8Array<ArrayBuffer>[] = [];
  for (let i = 0; i < POOL; i++) pool.push((await a.groupEncrypt(distributionId, PAYLOAD)).serialize() as Uint8Array<ArrayBuffer>);
  let next = 0;
  let lastBytes = 0;
  const names = members.map((m) => m);
  return {
    group_encrypt: {
      async op() {
        await a.groupEncrypt(distributionId, PAYLOAD);
      },
    } as Runner,
    group_send_100: {
      async op() {
        // libsignal's part is the encryption; the same SendRequest framing is added for size.
        const ct = (await a.groupEncrypt(distributionId, PAYLOAD)).serialize();
        lastBytes = sendRequest(
          new Uint8Array(16),
          ct,
          names.map((address) => ({ address, entry: new Uint8Array(0) })),
        ).length;
      },
    } as Runner,
    group_decrypt: {
      async op() {
        if (next === pool.length) {
          b = new LibsignalDevice("bob", 1);
          await b.processDistribution(a, dist);
          next = 0;
        }
        await b.groupDecrypt(a, pool[next++]);
      },
    } as Runner,
    sendBytes: () => lastBytes,
  };
}

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

/** One group send to 100 real member devices through a real server (Send until stored). */
async function serverFigures(p: CryptoProvider) {
  const nats = await startTestNats({ forceOwn: true });
  const server = await startTestServer(nats.url);
  try {
    const tag = Date.now().toString(36);
    const sender = await createTestAccount(server.url, `gbench-s-${tag}`, { oneTimePrekeys: 1, provider: p });
    const accounts = [];
    for (let i = 0; i < DEVICES / 2; i++)
      accounts.push(await createTestAccount(server.url, `gbench-${i}-${tag}`, { devices: 2, oneTimePrekeys: 1, provider: p }));
    const devices = accounts.flatMap((a) => a.devices.map((d) => d.address));
    const versions = accounts.map((a) => ({ accountId: a.accountId, deviceListVersion: 2n }));
    const delivery = createClient(DeliveryService, sender.devices[0].transport);
    const g = await sealpostGroup(p, 0);
    const fan = await pairwiseFanout(p);
    const group: number[] = [];
    const pairwise: number[] = [];
    const rounds = QUICK ? 40 : 100;
    for (let i = 0; i < rounds + 10; i++) {
      const t0 = performance.now();
      const c = content(p);
      const { sharedBody } = await g.sender.encrypt(GROUP_ID, c);
      const res = await delivery.send({
        messageId: c.messageId,
        sharedBody,
        entries: devices.map((device) => ({ device, entry: new Uint8Array(0) })),
        versions,
      });
      if (res.outcome.case !== "stored") throw new Error(`group send not stored: ${res.outcome.case}`);
      if (i >= 10) group.push(performance.now() - t0);
      if (i % 3 === 0) {
        const t1 = performance.now();
        const enc = await fan.encrypt();
        const r2 = await delivery.send({
          messageId: enc.messageId,
          sharedBody: enc.sharedBody,
          entries: enc.entries.map((e, j) => ({ device: devices[j], entry: e.entry })),
          versions,
        });
        if (r2.outcome.case !== "stored") throw new Error(`fan-out send not stored: ${r2.outcome.case}`);
        if (i >= 10) pairwise.push(performance.now() - t1);
      }
    }
    const ms = (x: number) => Number(x.toFixed(2));
    return {
      devices: devices.length,
      group_send: { p50_ms: ms(percentile(group, 0.5)), p90_ms: ms(percentile(group, 0.9)), samples: group.length },
      pairwise_fanout_send: { p50_ms: ms(percentile(pairwise, 0.5)), p90_ms: ms(percentile(pairwise, 0.9)), samples: pairwise.length },
      note: "client encrypt + Send RPC over HTTP/2 to a local server with its own nats-server, until stored in every mailbox; sequential sends",
    };
  } finally {
    await server.close();
    await nats.stop();
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const node = await sealpostSetups(createNodeProvider());
  const noble = await sealpostSetups(createNobleProvider());
  const lib = await libsignalSetups();
  const fanout = await pairwiseFanout(createNodeProvider());
  const results: Record<string, Record<string, Measured>> = {};
  for (const figure of ["group_encrypt", "group_send_100", "group_decrypt"] as const) {
    results[figure] = await measureInterleaved({ node: node[figure], noble: noble[figure], libsignal: lib[figure] });
  }
  results.pairwise_fanout_100 = await measureInterleaved({ node: fanout.runner });
  const allDecryptNodeMs = await node.allDecrypt();
  const allDecryptNobleMs = await noble.allDecrypt();
  const serverSend = SMOKE || process.argv.includes("--no-server") ? undefined : await serverFigures(createNodeProvider());

  const figures: Record<string, unknown>[] = [];
  const rows: string[] = [];
  for (const name of ["group_encrypt", "group_send_100", "group_decrypt"]) {
    const ref = results[name].libsignal;
    for (const impl of ["node", "noble"]) {
      const m = results[name][impl];
      const ratio = m.opsPerSec / ref.opsPerSec;
      figures.push({
        name,
        implementation: `sealpost/${impl}`,
        value: Math.round(m.opsPerSec),
        unit: name === "group_decrypt" ? "decrypts/s (one device)" : name === "group_send_100" ? "group sends/s (100 devices each)" : "encrypts/s (1 KiB)",
        microsPerOp: Number((1e6 / m.opsPerSec).toFixed(1)),
        samples: m.samples,
        reference: {
          implementation: "libsignal-client",
          value: Math.round(ref.opsPerSec),
          microsPerOp: Number((1e6 / ref.opsPerSec).toFixed(1)),
          samples: ref.samples,
        },
        ratio: Number(ratio.toFixed(2)),
      });
      rows.push(
        `${name.padEnd(16)} ${impl.padEnd(6)} ${Math.round(m.opsPerSec).toString().padStart(8)}/s (${(1e6 / m.opsPerSec).toFixed(1)} us)  libsignal ${Math.round(ref.opsPerSec).toString().padStart(8)}/s  x${ratio.toFixed(2)}`,
      );
    }
  }
  const f = results.pairwise_fanout_100.node;
  figures.push({
    name: "pairwise_fanout_100",
    implementation: "sealpost/node",
    value: Math.round(f.opsPerSec),
    unit: "messages/s (100 devices each, sealed body + 100 ratchet entries)",
    microsPerOp: Number((1e6 / f.opsPerSec).toFixed(1)),
    samples: f.samples,
  });
  rows.push(`pairwise_fanout_100 node ${Math.round(f.opsPerSec)}/s (${(1e6 / f.opsPerSec).toFixed(0)} us)  SendRequest ${fanout.bytes()} B`);
  const sizes = {
    group_send_request_bytes: node.sendBytes(),
    group_send_request_bytes_libsignal_ciphertext: lib.sendBytes(),
    pairwise_fanout_send_request_bytes: fanout.bytes(),
  };
  rows.push(
    `SendRequest bytes, 100 devices: sender keys ${sizes.group_send_request_bytes} (libsignal ciphertext framed alike ${sizes.group_send_request_bytes_libsignal_ciphertext}), pairwise fan-out ${sizes.pairwise_fanout_send_request_bytes}`,
  );
  rows.push(`all 100 devices decrypt one message: node ${allDecryptNodeMs.toFixed(1)} ms, noble ${allDecryptNobleMs.toFixed(1)} ms (sequential, one process)`);
  if (serverSend) {
    rows.push(
      `real server, 100 devices: group send p50 ${serverSend.group_send.p50_ms} ms (p90 ${serverSend.group_send.p90_ms}), pairwise fan-out send p50 ${serverSend.pairwise_fanout_send.p50_ms} ms (p90 ${serverSend.pairwise_fanout_send.p90_ms})`,
    );
  }
  const target = figures.find((x) => x.name === "group_encrypt" && x.implementation === "sealpost/node") as { ratio: number };
  const pkg = (n: string) => JSON.parse(fs.readFileSync(path.join(repoRoot(), "node_modules", n, "package.json"), "utf8")).version as string;
  const result = {
    benchmark: "group",
    mode: SMOKE ? "smoke" : QUICK ? "quick" : "full",
    date: new Date().toISOString(),
    durationSec: Math.round((Date.now() - started) / 100) / 10,
    machine: {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.arch()}`,
      node: process.version,
    },
    versions: { "@signalapp/libsignal-client": pkg("@signalapp/libsignal-client"), "@noble/curves": pkg("@noble/curves") },
    method: `per figure, samples of ~${SAMPLE_MS} ms interleaved across implementations (${SAMPLES} each after a ${WARMUP_MS} ms warm-up); value = median; one process, sequential awaits, in-memory stores; payload: a 1 KiB text (sealpost pads the ~1.05 KiB Content to its bucket; libsignal encrypts 1 KiB raw)`,
    group_devices: DEVICES,
    figures,
    sizes,
    all_devices_decrypt_ms: { node: Number(allDecryptNodeMs.toFixed(2)), noble: Number(allDecryptNobleMs.toFixed(2)) },
    server_send_100: serverSend ?? null,
    targets: [{ figure: "group_encrypt", provider: "node", minRatio: 1, ratio: target.ratio, met: target.ratio >= 1 }],
  };
  const out = path.join(process.env.BENCH_RESULTS_DIR ?? path.join(repoRoot(), "bench", "results"), "group.json");
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
  console.log(rows.join("\n"));
  console.log(`target group_encrypt (node) >= libsignal: ${target.ratio >= 1 ? "met" : "NOT met"} (x${target.ratio})`);
  console.log(`wrote ${path.relative(process.cwd(), out)} in ${result.durationSec} s`);
}

function repoRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
}

await main();
