/**
 * Side-by-side crypto benchmark: sealpost (noble and node:crypto providers) against
 * `@signalapp/libsignal-client` in the same process run. Writes bench/results/crypto.json.
 *
 *   npx tsx bench/src/crypto-bench.ts [--quick]
 *
 * Figures (ops/s, higher is better; each is the median of several timed samples):
 *   session_setup     bundle -> first message (1 KiB) -> responder decrypts it, incl. ML-KEM-768
 *   steady_1to1       one-way encrypt + decrypt of 1 KiB in an established session
 *   ping_pong         encrypt + decrypt of 1 KiB, direction alternating (a DH ratchet every turn;
 *                     sealpost's version 2 sessions take a post-quantum ratchet step now and then)
 *   ping_pong_classical  the same on sealpost version 1 sessions (no PQ ratchet): what the PQ
 *                     ratchet costs, beside libsignal's ping_pong
 *   fanout8_send      one 1 KiB message to 8 devices, sender side (libsignal: 8 signalEncrypt)
 *   fanout8_roundtrip the same plus all 8 receivers decrypting
 * plus libsignal's sender-key group encrypt as a reference figure for the groups work.
 * Key generation for bundles (the recipient's prekeys) happens outside the timed loops, for
 * both implementations alike.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { toBinary } from "@bufbuild/protobuf";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { createNobleProvider, createNodeProvider, type CryptoProvider } from "@sealpost/client/crypto";
import { paddedLength } from "@sealpost/client/protocol";
import { LibsignalDevice, spqrBytes } from "./crypto-libsignal.js";
import { CONTENT, SealpostDevice, coreSetups, sealpostPair, sealpostRoundTrip, sealpostSend, timedOps, type Runner } from "./sealpost-workload.js";
import { benchMode, sampling } from "./result.js";

const MODE = benchMode();
/** Timed samples per figure and implementation, and the time budget of one sample (result.ts: smoke/quick/full). */
const { samples: SAMPLES, sampleMs: SAMPLE_MS } = sampling(MODE);
const WARMUP_MS = Number(process.env.WARM ?? sampling(MODE).warmupMs);

const PAYLOAD = new Uint8Array(1024).map((_, i) => (i * 31) & 0xff);
interface Measured {
  opsPerSec: number;
  samples: number[];
}

/**
 * Times several implementations of one figure with their samples interleaved (A B C A B C
 * ...), so process-wide effects (GC of native handles, JIT state) fall on all of them alike.
 * Measured here: running libsignal first halved the next JS figure when runs were sequential.
 */
async function measureInterleaved(runners: Record<string, Runner>): Promise<Record<string, Measured>> {
  const names = Object.keys(runners);
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const run = async (r: Runner, budgetMs: number, record: number[] | undefined) => {
    const opsPerSec = await timedOps(r, budgetMs);
    record?.push(opsPerSec);
  };
  for (const name of names) await run(runners[name], WARMUP_MS, undefined);
  for (let s = 0; s < SAMPLES; s++) for (const name of names) await run(runners[name], SAMPLE_MS, samples[name]);
  return Object.fromEntries(
    names.map((name) => {
      const sorted = [...samples[name]].sort((a, b) => a - b);
      return [name, { opsPerSec: sorted[Math.floor(sorted.length / 2)], samples: samples[name].map((x) => Math.round(x)) }];
    }),
  );
}

type Setup = () => Promise<Runner>;

/** The figures of sealpost with one provider, as setups producing runners. */
function sealpostSetups(provider: CryptoProvider): Record<string, Setup> {
  const pingPong = async (sessionVersion: 1 | 2): Promise<Runner> => {
    const [a, b] = await sealpostPair(provider, { sessionVersion });
    await a.cipher.processBundle(b.address, await b.bundle());
    await sealpostRoundTrip(a, b);
    let turn = 0;
    return { op: () => (turn++ % 2 === 0 ? sealpostRoundTrip(b, a) : sealpostRoundTrip(a, b)) };
  };
  return {
    ...coreSetups(provider),
    ping_pong: () => pingPong(2),
    ping_pong_classical: () => pingPong(1),
    async fanout8_send() {
      const [a, peers] = await sealpostFanout(provider, "alice");
      return {
        async op() {
          await sealpostSend(a, peers);
        },
      };
    },
    async fanout8_roundtrip() {
      const [a, peers] = await sealpostFanout(provider, "carol");
      return {
        async op() {
          const m = await sealpostSend(a, peers);
          for (let i = 0; i < peers.length; i++) await peers[i].cipher.decrypt(m.entries[i].entry, m.sharedBody, a.address);
        },
      };
    },
  };
}

/** A sender with established sessions to 8 devices. */
async function sealpostFanout(provider: CryptoProvider, sender: string): Promise<[SealpostDevice, SealpostDevice[]]> {
  const a = await new SealpostDevice(provider, { accountId: sender, deviceId: 1 }).init();
  const peers: SealpostDevice[] = [];
  for (let i = 0; i < 8; i++) {
    const p = await new SealpostDevice(provider, { accountId: "bob", deviceId: i + 1 }).init();
    await a.trust(p);
    await p.trust(a);
    await a.cipher.processBundle(p.address, await p.bundle());
    await sealpostRoundTrip(a, p);
    await sealpostRoundTrip(p, a);
    peers.push(p);
  }
  return [a, peers];
}

async function libsignalRoundTrip(from: LibsignalDevice, to: LibsignalDevice): Promise<void> {
  const m = await from.encrypt(to, PAYLOAD);
  await to.decrypt(from, m);
}

async function libsignalFanout(sender: string): Promise<[LibsignalDevice, LibsignalDevice[]]> {
  const a = new LibsignalDevice(sender, 1);
  const peers: LibsignalDevice[] = [];
  for (let i = 0; i < 8; i++) {
    const p = new LibsignalDevice("bob", i + 1);
    await a.processBundle(p, p.bundle());
    await libsignalRoundTrip(a, p);
    await libsignalRoundTrip(p, a);
    peers.push(p);
  }
  return [a, peers];
}

function libsignalSetups(): Record<string, Setup> {
  return {
    async session_setup() {
      const a = new LibsignalDevice("alice", 1);
      const b = new LibsignalDevice("bob", 1);
      const pool: ReturnType<LibsignalDevice["bundle"]>[] = [];
      return {
        maxOps: 64,
        async between() {
          while (pool.length < 64) pool.push(b.bundle());
        },
        async op() {
          await a.processBundle(b, pool.pop()!);
          await libsignalRoundTrip(a, b);
        },
      };
    },
    async steady_1to1() {
      const a = new LibsignalDevice("alice", 1);
      const b = new LibsignalDevice("bob", 1);
      await a.processBundle(b, b.bundle());
      await libsignalRoundTrip(a, b);
      await libsignalRoundTrip(b, a);
      return { op: () => libsignalRoundTrip(a, b) };
    },
    async ping_pong() {
      const a = new LibsignalDevice("alice", 1);
      const b = new LibsignalDevice("bob", 1);
      await a.processBundle(b, b.bundle());
      await libsignalRoundTrip(a, b);
      let turn = 0;
      return { op: () => (turn++ % 2 === 0 ? libsignalRoundTrip(b, a) : libsignalRoundTrip(a, b)) };
    },
    async fanout8_send() {
      const [a, peers] = await libsignalFanout("alice");
      return {
        async op() {
          for (const p of peers) await a.encrypt(p, PAYLOAD);
        },
      };
    },
    async fanout8_roundtrip() {
      const [a, peers] = await libsignalFanout("carol");
      return {
        async op() {
          for (const p of peers) await libsignalRoundTrip(a, p);
        },
      };
    },
    async group_encrypt_reference() {
      const a = new LibsignalDevice("alice", 1);
      const b = new LibsignalDevice("bob", 1);
      const distributionId = "d1b1a1c0-0000-4000-8000-000000000001";
      await b.processDistribution(a, await a.createDistribution(distributionId));
      return {
        async op() {
          await a.groupEncrypt(distributionId, PAYLOAD);
        },
      };
    },
  };
}

interface Target {
  figure: string;
  provider: string;
  minRatio: number;
}

const TARGETS: Target[] = [
  { figure: "steady_1to1", provider: "node", minRatio: 3 },
  { figure: "ping_pong", provider: "node", minRatio: 1 },
  { figure: "session_setup", provider: "node", minRatio: 1 },
];

async function main(): Promise<void> {
  const started = Date.now();
  const impls: Record<string, Record<string, Setup>> = {
    libsignal: libsignalSetups(),
    node: sealpostSetups(createNodeProvider()),
    noble: sealpostSetups(createNobleProvider()),
  };
  const results: Record<string, Record<string, Measured>> = { libsignal: {}, node: {}, noble: {} };
  for (const figure of ["session_setup", "steady_1to1", "ping_pong", "fanout8_send", "fanout8_roundtrip", "group_encrypt_reference"]) {
    const runners: Record<string, Runner> = {};
    for (const [impl, setups] of Object.entries(impls)) if (setups[figure]) runners[impl] = await setups[figure]();
    // Classical (version 1) ping-pong in the same interleaved samples: the PQ ratchet's cost.
    if (figure === "ping_pong") for (const impl of ["node", "noble"]) runners[`${impl}:classical`] = await impls[impl].ping_pong_classical();
    const measured = await measureInterleaved(runners);
    for (const [impl, m] of Object.entries(measured)) {
      const [name, variant] = impl.split(":");
      results[name][variant ? `${figure}_${variant}` : figure] = m;
    }
  }
  const { libsignal, node, noble } = results;

  const figures: Record<string, unknown>[] = [];
  const rows: string[] = [];
  for (const name of ["session_setup", "steady_1to1", "ping_pong", "ping_pong_classical", "fanout8_send", "fanout8_roundtrip"]) {
    const ref = libsignal[name] ?? libsignal.ping_pong;
    for (const [provider, res] of [
      ["node", node],
      ["noble", noble],
    ] as const) {
      const m = res[name];
      const ratio = m.opsPerSec / ref.opsPerSec;
      figures.push({
        name,
        implementation: `sealpost/${provider}`,
        value: Math.round(m.opsPerSec),
        unit: name.startsWith("fanout8") ? "messages/s (8 devices each)" : name === "session_setup" ? "setups/s" : "pairs/s",
        samples: m.samples,
        reference: { implementation: "libsignal-client", value: Math.round(ref.opsPerSec), samples: ref.samples },
        ratio: Number(ratio.toFixed(2)),
      });
      rows.push(
        `${name.padEnd(18)} ${provider.padEnd(6)} ${Math.round(m.opsPerSec).toString().padStart(8)}  libsignal ${Math.round(ref.opsPerSec).toString().padStart(8)}  x${ratio.toFixed(2)}`,
      );
    }
  }
  const g = libsignal.group_encrypt_reference;
  figures.push({
    name: "group_encrypt_reference",
    implementation: "libsignal-client",
    value: Math.round(g.opsPerSec),
    unit: "encrypts/s (1 KiB)",
    samples: g.samples,
    note: "reference only: sender keys belong to the groups work",
  });
  rows.push(`group_encrypt      libsignal reference ${Math.round(g.opsPerSec)}`);
  const pq = await pqRatchetCost();
  figures.push(...pq);
  for (const f of pq)
    rows.push(
      `${f.name.padEnd(18)} ${f.implementation.padEnd(14)} ${f.value} ${f.unit}${"reference" in f ? `  libsignal ${(f.reference as { value: number }).value}` : ""}`,
    );

  const targets = TARGETS.map((t) => {
    const f = figures.find((x) => x.name === t.figure && x.implementation === `sealpost/${t.provider}`) as { ratio: number };
    return { ...t, ratio: f.ratio, met: f.ratio >= t.minRatio };
  });
  const pkg = (n: string) => JSON.parse(fs.readFileSync(path.join(repoRoot(), "node_modules", n, "package.json"), "utf8")).version as string;
  const result = {
    benchmark: "crypto",
    mode: MODE,
    date: new Date().toISOString(),
    durationSec: Math.round((Date.now() - started) / 100) / 10,
    machine: {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.arch()}`,
      node: process.version,
    },
    versions: {
      "@signalapp/libsignal-client": pkg("@signalapp/libsignal-client"),
      "@noble/curves": pkg("@noble/curves"),
      "@noble/post-quantum": pkg("@noble/post-quantum"),
    },
    method: `per figure, samples of ~${SAMPLE_MS} ms interleaved across implementations (${SAMPLES} each, after a ${WARMUP_MS} ms warm-up each); value = median; same process, sequential awaits, in-memory stores`,
    figures,
    targets,
  };
  const out = path.join(process.env.BENCH_RESULTS_DIR ?? path.join(repoRoot(), "bench", "results"), "crypto.json");
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
  console.log(rows.join("\n"));
  for (const t of targets) console.log(`target ${t.figure} (${t.provider}) >= x${t.minRatio}: ${t.met ? "met" : "NOT met"} (x${t.ratio})`);
  console.log(`wrote ${path.relative(process.cwd(), out)} in ${result.durationSec} s`);
}

/**
 * What the post-quantum ratchet costs beside libsignal (whose sessions run SPQR, its sparse
 * post-quantum ratchet): protocol bytes per message over a 200-message ping-pong (sealpost:
 * the entry and the shared body minus the padded content; libsignal: the serialized message
 * minus the 1 KiB payload), and the time of one step's KEM work (a key pair, an encapsulation, a
 * decapsulation) with each provider.
 */
async function pqRatchetCost() {
  const MESSAGES = 200;
  const contentBytes = paddedLength(toBinary(ContentSchema, { ...CONTENT, messageId: new Uint8Array(16) }).length);
  const sealpostBytes = async (sessionVersion: 1 | 2) => {
    const [a, b] = await sealpostPair(createNodeProvider(), { sessionVersion });
    await a.cipher.processBundle(b.address, await b.bundle());
    await sealpostRoundTrip(a, b);
    await sealpostRoundTrip(b, a);
    let bytes = 0;
    for (let i = 0; i < MESSAGES; i++) {
      const [from, to] = i % 2 === 0 ? [a, b] : [b, a];
      const m = await sealpostSend(from, [to]);
      // What travels (the entry, and the shared body when the content does not ride inline)
      // minus the padded content: the protocol's own bytes, as libsignal's below.
      bytes += m.entries[0].entry.length + m.sharedBody.length - contentBytes;
      await to.cipher.decrypt(m.entries[0].entry, m.sharedBody, from.address);
    }
    return Math.round(bytes / MESSAGES);
  };
  const libsignalBytes = async () => {
    const a = new LibsignalDevice("alice", 1);
    const b = new LibsignalDevice("bob", 1);
    await a.processBundle(b, b.bundle());
    await libsignalRoundTrip(a, b);
    await libsignalRoundTrip(b, a);
    let bytes = 0;
    let spqr = 0;
    for (let i = 0; i < MESSAGES; i++) {
      const [from, to] = i % 2 === 0 ? [a, b] : [b, a];
      const m = await from.encrypt(to, PAYLOAD);
      bytes += m.serialize().length - PAYLOAD.length;
      spqr += spqrBytes(m);
      await to.decrypt(from, m);
    }
    return { bytes: Math.round(bytes / MESSAGES), spqr: Math.round(spqr / MESSAGES) };
  };
  const stepMs = (p: CryptoProvider) => {
    const times: number[] = [];
    for (let i = 0; i < 21; i++) {
      const t = performance.now();
      const k = p.mlKemKeygen(p.random(64));
      const e = p.mlKemEncapsulate(k.publicKey, p.random(32));
      p.mlKemDecapsulate(e.ciphertext, k.secretKey);
      times.push(performance.now() - t);
    }
    return Number(times.sort((x, y) => x - y)[10].toFixed(2));
  };
  const [v2, v1, { bytes: libsignal, spqr }] = [await sealpostBytes(2), await sealpostBytes(1), await libsignalBytes()];
  const bytes = (implementation: string, value: number, note: string) => ({
    name: "pq_ratchet_bytes",
    implementation,
    value,
    unit: "protocol bytes/message",
    samples: 1,
    reference: { implementation: "libsignal-client (SPQR)", value: libsignal, samples: 1 },
    note,
  });
  const step = (implementation: string, value: number) => ({
    name: "pq_ratchet_step",
    implementation,
    value,
    unit: "ms per step",
    samples: 21,
    note: "one step's KEM work on both sides (a key pair, an encapsulation, a decapsulation), median of 21",
  });
  return [
    bytes(
      "sealpost/node",
      v2,
      `version 2 sessions, ${MESSAGES}-message ping-pong, default schedule (a step per side after 50 messages sent); what travels (entry and shared body) minus the padded 1 KiB content; libsignal: serialized message minus the 1 KiB payload, of which ${spqr} bytes per message are its SPQR field`,
    ),
    bytes("sealpost/node classical", v1, "the same on version 1 sessions (no PQ ratchet)"),
    step("sealpost/node", stepMs(createNodeProvider())),
    step("sealpost/noble", stepMs(createNobleProvider())),
  ];
}

function repoRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
}

await main();
