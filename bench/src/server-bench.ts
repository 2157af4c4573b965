/**
 * Server benchmark: a sealpost server (its own process) beside raw JetStream on the same
 * nats-server (its own, on loopback) in the same run. Writes bench/results/server.json.
 *
 *   npx tsx bench/src/server-bench.ts [--smoke|--quick] [--baseline <git-ref>] [--profile]
 *                                     [--figures <groups> [--merge]]
 *
 * Figures (every load is bounded in count and time and targets loopback only):
 *   send_routed         1 KiB messages/s routed through Send to a receiving device's open
 *                       Receive stream (which acks), 64 Sends in flight through a lean
 *                       Connect client on node:http2 (raw-unary.ts: connect-node's client was
 *                       the limit); reference: JetStream async publish of 1 KiB with 256 acks
 *                       in flight
 *   send_routed_per_server_core  the same deliveries over the CPU seconds the server process
 *                       and nats-server used for them (/proc), the load generator excluded
 *   sealed_send_routed  the send_routed load through SendSealed (no token; the recipients'
 *                       access key), interleaved with Send on the same server; reference:
 *                       send_routed of the same samples (sealed sends must not be slower)
 *   session_routed      the same 1 KiB routing over DeliveryService.Session streams: 8 sender
 *                       sessions with 128 sends in flight each, 8 receiver sessions (mailbox
 *                       and acks on the stream); every server under test, interleaved
 *   session_latency_1k_p50/p99  open loop at 1k msg/s over those sessions, beside raw publish ->
 *                       PubAck at the same rate
 *   metrics_overhead    the session load per server-side CPU second with metrics on (default)
 *                       and on an instance with --metrics off, interleaved
 *   scaleout_one_instance / scaleout_two_instances  the session load on one instance, and spread
 *                       over two instances of the current server on the same NATS (half the
 *                       messages cross instances), interleaved; per_server_core counts both
 *   latency_<r>_p50/p95/p99/max  Send (intended start, open loop at r msg/s) -> the message
 *                       arrives on the Receive stream; reference: publish -> PubAck latency
 *                       at the same offered load
 *   reconnect_catchup   devices/s that open Receive, read their 10 pending messages until
 *                       Drained and ack them; reference: the same on JetStream alone (direct
 *                       gets next_by_subj, deletes)
 *   idle_streams_rss    server RSS with N idle Receive streams open (10k in full mode), 500
 *                       streams per HTTP/2 connection, once they have been idle for 15 s (and,
 *                       in its params, 3 s after the last one opened)
 *   idle_streams_rss_connection_each  KiB RSS per idle stream with one HTTP/2 connection per
 *                       device, as real clients connect (up to 2,000 streams)
 *   deliveries_at_saturation  deliveries/s with SATURATION_IN_FLIGHT unary Sends in flight
 *                       (well past the throughput figure's peak); reference: the Sends answered
 *                       Stored in the same windows (deliveries must keep up with what is accepted)
 *   scale_devices_<n>   deliveries/s with n devices per Send (1, 8, 64), 1 KiB
 *   scale_size_<b>      messages/s with b-byte bodies (256 B .. 256 KiB), 1 device per Send
 *
 * --baseline <ref> also runs the server of another commit (a git worktree) and measures the
 * throughput, latency and catch-up figures for both, interleaved (before/after in one run).
 * --profile runs the server with --cpu-prof (<tmpdir>/sealpost-bench-profiles/, read with profile-top.ts).
 * DUMP_METRICS=1 prints each server's delivery counters after the Session samples (appends,
 * live pushes, reads, acked messages, NATS requests by operation): what the load cost in operations.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createNodeProvider } from "@sealpost/client/crypto";
import { startTestNats, type TestNats } from "@sealpost/test-support";
import { createBenchDevices, type BenchDevice } from "./server/bench-accounts.js";
import { catchUp, MessageIds, Receivers, send, sendRequest, sendSealed, shed } from "./server/delivery-load.js";
import { allowSealedMail } from "./server/bench-accounts.js";
import {
  fillBackgroundMail,
  openRawJetStream,
  purgeBackgroundMail,
  rawCatchUp,
  rawFill,
  rawPublishLatencies,
  rawPublishRate,
  type RawJetStream,
} from "./server/raw-jetstream.js";
import { startBenchServer, type BenchServer, type ServerMemory } from "./server/server-process.js";
import { RawUnaryPool } from "./server/raw-unary.js";
import { Http2Pool } from "./server/raw-http2.js";
import type * as http2 from "node:http2";
import { BenchSession } from "./server/session-load.js";
import {
  benchMode,
  machineInfo,
  median,
  mergeResult,
  packageVersion,
  percentile,
  loadAverageNow,
  ratio,
  readResult,
  repoRoot,
  round,
  writeResult,
  type BenchResult,
  type Figure,
} from "./result.js";
import { cpuSeconds } from "./proc-cpu.js";
import { untilNextDue } from "./open-loop.js";

const mode = benchMode();
const P = {
  smoke: {
    sampleMs: 300,
    samples: 1,
    latencyMs: 400,
    rates: [1000],
    catchupDevices: 20,
    catchupBatches: 1,
    spreadBackground: 500,
    idleStreams: 200,
    idleSettleMs: 200,
    scaleMs: 200,
  },
  quick: {
    sampleMs: 800,
    samples: 3,
    latencyMs: 1500,
    rates: [200, 1000, 5000],
    catchupDevices: 240,
    catchupBatches: 3,
    spreadBackground: 10_000,
    idleStreams: 1000,
    idleSettleMs: 5000,
    scaleMs: 500,
  },
  full: {
    sampleMs: 2500,
    samples: 5,
    latencyMs: 8000,
    rates: [200, 1000, 5000],
    catchupDevices: 2000,
    catchupBatches: 4,
    spreadBackground: 100_000,
    idleStreams: 10000,
    idleSettleMs: 12_000,
    scaleMs: 2000,
  },
}[mode];
/** The pause after each half of the idle streams opened, before their RSS is read. */
const IDLE_PAUSE_MS = mode === "smoke" ? 200 : 3000;
/** Raw publishes in flight (JetStream's best here). */
const IN_FLIGHT = 256;
/** Sends in flight for the routed figures (kept at 64 since the first runs, so runs compare). */
const SEND_IN_FLIGHT = 64;
/**
 * Sends in flight for deliveries_at_saturation: 16x the routed figures', past where the
 * instance's Sends/s stop rising. Before the load generator's connections had wide receive
 * windows (as clients/ts opens them), deliveries here fell to half the accepted Sends.
 */
const SATURATION_IN_FLIGHT = 1024;
const RECEIVERS = 64;
const SENDERS = 8;
const PENDING = 10;
const CATCHUP_CONCURRENCY = 64;
/** Catch-up devices per sample (P.catchupBatches samples per figure). */
const CATCHUP_PER_SAMPLE = Math.floor(P.catchupDevices / P.catchupBatches);
const MAX_OUTSTANDING = 20_000;
const SIZES = [256, 1024, 16 * 1024, 256 * 1024];
const DEVICES_PER_SEND = [1, 8, 64];
/** --figures a,b: run only these groups (send_routed, saturation, sealed, session_routed, scale_out, metrics, latency, catchup, scale, idle). */
const GROUPS = (arg("--figures") ?? "send_routed,saturation,sealed,session_routed,scale_out,metrics,latency,catchup,scale,idle").split(",");
/**
 * --merge (with --figures): replace only these groups' figures in bench/results/server.json,
 * each marked with its own run, and keep the rest of the last run (e.g. to refresh the idle
 * streams figures on a box slower than the one the throughput figures were measured on).
 */
const MERGE = process.argv.includes("--merge");
if (MERGE && !arg("--figures")) throw new Error("--merge needs --figures: it replaces only the groups measured");
/** Sends each session keeps in flight (session_routed). */
const SESSION_IN_FLIGHT = 128;
const want = (g: string) => GROUPS.includes(g);

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** One server under test with its accounts and open Receive streams. */
interface Rig {
  label: string;
  server: BenchServer;
  /** Connections for the catch-up devices' Receive and Ack (lean clients, raw-receive.ts). */
  pool: Http2Pool;
  /** The lean unary client the Send load goes through (raw-unary.ts). */
  raw: RawUnaryPool;
  /** The receivers' connections. */
  receivePool: Http2Pool;
  ids: MessageIds;
  receivers: Receivers;
  recipients: BenchDevice[];
  senders: BenchDevice[];
  catchup: BenchDevice[];
}

const provider = createNodeProvider();
const log = (s: string) => console.log(`[server-bench ${((performance.now() - T0) / 1000).toFixed(1)}s] ${s}`);
const T0 = performance.now();

async function makeRig(label: string, natsUrl: string, serverSrc: string | undefined, profileDir: string | undefined): Promise<Rig> {
  const server = await startBenchServer({
    label,
    natsUrl,
    serverSrc,
    nodeFlags: profileDir ? ["--cpu-prof", `--cpu-prof-dir=${path.join(profileDir, label)}`] : [],
  });
  const tag = `${label.toLowerCase().replace(/[^a-z0-9]/g, "")}-${Date.now().toString(36)}`;
  const t = performance.now();
  const recipients = await createBenchDevices(provider, server.url, `r-${tag}`, RECEIVERS);
  const senders = await createBenchDevices(provider, server.url, `s-${tag}`, SENDERS);
  const catchup = want("catchup") ? await createBenchDevices(provider, server.url, `c-${tag}`, P.catchupDevices) : [];
  log(`${label}: ${RECEIVERS + SENDERS + catchup.length} accounts in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const pool = new Http2Pool(server.url, 8);
  const ids = new MessageIds();
  const receivePool = new Http2Pool(server.url, 4);
  const receivers = new Receivers(receivePool, ids);
  await receivers.open(recipients);
  return { label, server, pool, raw: new RawUnaryPool(server.url, 8), receivePool, ids, receivers, recipients, senders, catchup };
}

/** Server-side CPU (this rig's server process + the nats-server) in seconds so far. */
let natsPid: number | undefined;
const serverSideCpu = (rig: Rig) => cpuSeconds(rig.server.pid) + cpuSeconds(natsPid);

/** Closed loop: `inFlight` Sends outstanding for `ms`; deliveries counted on the Receive streams. */
async function routedRate(
  rig: Rig,
  size: number,
  devicesPerSend: number,
  inFlight: number,
  ms: number,
  /** Send with SendSealed and this access key instead of Send. */
  sealedKey?: Uint8Array,
): Promise<{ sends: number; deliveries: number; perServerCore: number; shed: number }> {
  const body = new Uint8Array(size).fill(9);
  let sends = 0;
  const shed0 = shed.count;
  let expected = 0;
  let k = 0;
  const a0 = rig.receivers.arrivals;
  const cpu0 = serverSideCpu(rig);
  const cpuServer0 = cpuSeconds(rig.server.pid);
  const start = performance.now();
  const end = start + ms;
  const worker = async () => {
    while (performance.now() < end) {
      const i = k++;
      const to = devicesPerSend === 1 ? [rig.recipients[i % 8]] : rig.recipients.slice(0, devicesPerSend);
      expected += to.length;
      const req = sendRequest(rig.ids.make(rig.ids.next++), body, to);
      if (sealedKey) await sendSealed(rig.raw, sealedKey, req);
      else await send(rig.raw, rig.senders[i % SENDERS], req);
      sends++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsed = performance.now() - start;
  const delivered = rig.receivers.arrivals - a0;
  // Let the rest arrive (and be acked) before the next sample; not counted.
  if (!(await rig.receivers.waitFor(a0 + expected, 30_000))) log(`${rig.label}: ${a0 + expected - rig.receivers.arrivals} messages missing after 30 s`);
  // Per server-side core: every delivery of the sample, including the tail that arrived
  // after it, over the CPU the server and nats-server used for all of it.
  const cpu = serverSideCpu(rig) - cpu0;
  const perServerCore = cpu > 0 ? (rig.receivers.arrivals - a0) / cpu : 0;
  if (process.env.BENCH_CPU_SPLIT)
    log(
      `${rig.label}: ${rig.receivers.arrivals - a0} deliveries, server ${(cpuSeconds(rig.server.pid) - cpuServer0).toFixed(2)} s + nats-server ${(cpu - (cpuSeconds(rig.server.pid) - cpuServer0)).toFixed(2)} s CPU`,
    );
  await settle();
  return { sends: (sends * 1000) / elapsed, deliveries: (delivered * 1000) / elapsed, perServerCore, shed: shed.count - shed0 };
}

/** Sender sessions, receiver sessions and the receivers' devices (the senders' addressees). */
interface SessionPair {
  senders: BenchSession[];
  receivers: BenchSession[];
  to: BenchDevice[];
}

/**
 * SENDERS sender sessions on the first half of `devices` and SENDERS receiver sessions on the
 * second; `at(i)` picks a connection, receiver i takes the one after sender i's.
 */
async function openSessionPair(devices: BenchDevice[], at: (i: number) => http2.ClientHttp2Session, ids: MessageIds): Promise<SessionPair> {
  const senders = devices.slice(0, SENDERS).map((d, i) => new BenchSession(at(i), d));
  const receivers = devices.slice(SENDERS).map((d, i) => new BenchSession(at(i + 1), d, ids));
  await Promise.all(receivers.map((r) => r.receive()));
  return { senders, receivers, to: devices.slice(SENDERS) };
}

async function closeSessionPair(pair: SessionPair): Promise<void> {
  await Promise.all([...pair.senders, ...pair.receivers].map((x) => x.close()));
}

/**
 * Closed loop over DeliveryService.Session: SENDERS sender sessions, each with
 * SESSION_IN_FLIGHT sends pipelined, to SENDERS receiver sessions (mailbox and acks on the
 * stream), for `ms`. Devices of their own (a session's mailbox would replace the Receive
 * streams of the unary figures). Returns deliveries/s and per server-side CPU second.
 */
async function sessionRate(rig: Rig, pair: SessionPair, ms: number, morePids: number[] = []): Promise<{ deliveries: number; perServerCore: number }> {
  const body = new Uint8Array(1024).fill(9);
  const arrivals = () => pair.receivers.reduce((n, r) => n + r.arrivals, 0);
  const a0 = arrivals();
  const moreCpu = () => morePids.reduce((t, pid) => t + cpuSeconds(pid), 0);
  const more0 = moreCpu();
  const cpu0 = serverSideCpu(rig);
  const server0 = cpuSeconds(rig.server.pid);
  const gen0 = process.cpuUsage();
  const start = performance.now();
  const end = start + ms;
  let expected = 0;
  let k = 0;
  const worker = async (s: BenchSession) => {
    while (performance.now() < end) {
      const i = k++;
      expected++;
      await s.send(sendRequest(rig.ids.make(rig.ids.next++), body, [pair.to[i % pair.to.length]]));
    }
  };
  await Promise.all(pair.senders.flatMap((s) => Array.from({ length: SESSION_IN_FLIGHT }, () => worker(s))));
  const elapsed = performance.now() - start;
  const delivered = arrivals() - a0;
  const until = performance.now() + 30_000;
  while (arrivals() < a0 + expected && performance.now() < until) await new Promise((r) => setTimeout(r, 5));
  if (arrivals() < a0 + expected) log(`${rig.label}: ${a0 + expected - arrivals()} session messages missing after 30 s`);
  const more = moreCpu() - more0;
  const cpu = serverSideCpu(rig) - cpu0 + more;
  const serverCpu = cpuSeconds(rig.server.pid) - server0;
  if (process.env.BENCH_CPU_SPLIT)
    log(
      `${rig.label}: session ${arrivals() - a0} deliveries, server ${serverCpu.toFixed(2)} s${morePids.length ? ` + other instances ${more.toFixed(2)} s` : ""} + nats-server ${(cpu - serverCpu - more).toFixed(2)} s CPU; load generator ${(((u) => (u.user + u.system) / 1e6)(process.cpuUsage(gen0))).toFixed(2)} s`,
    );
  await settle();
  return { deliveries: (delivered * 1000) / elapsed, perServerCore: cpu > 0 ? (arrivals() - a0) / cpu : 0 };
}

/** Open loop at `rate` msg/s over Session streams: latency from the intended send time to arrival. */
async function sessionLatencies(rig: Rig, pair: SessionPair, rate: number, ms: number): Promise<{ latencies: number[]; saturated: boolean }> {
  const body = new Uint8Array(1024).fill(9);
  const intended = new Map<number, number>();
  const latencies: number[] = [];
  for (const r of pair.receivers) {
    r.listener = (c, at) => {
      const t = intended.get(c);
      if (t !== undefined) {
        intended.delete(c);
        latencies.push(at - t);
      }
    };
  }
  const total = Math.floor((rate * ms) / 1000);
  const t0 = performance.now();
  let issued = 0;
  let saturated = false;
  while (issued < total && !saturated) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
    while (issued < due) {
      if (intended.size >= MAX_OUTSTANDING) {
        saturated = true;
        break;
      }
      const c = rig.ids.next++;
      intended.set(c, t0 + (issued * 1000) / rate);
      const i = issued++;
      pair.senders[i % pair.senders.length].send(sendRequest(rig.ids.make(c), body, [pair.to[i % pair.to.length]])).catch(() => {});
    }
    await untilNextDue(t0, issued, rate);
  }
  const offeredEnd = performance.now();
  while (intended.size && performance.now() < offeredEnd + 30_000) await new Promise((r) => setTimeout(r, 5));
  for (const r of pair.receivers) r.listener = undefined;
  await settle();
  return { latencies, saturated: saturated || intended.size > 0 || performance.now() - offeredEnd > 1000 };
}

/** Open loop at `rate` msg/s for `ms`: latency from the intended send time to arrival. */
async function routedLatencies(rig: Rig, rate: number, ms: number): Promise<{ latencies: number[]; saturated: boolean; sendErrors: number; drainMs: number }> {
  const body = new Uint8Array(1024).fill(9);
  const intended = new Map<number, number>();
  const latencies: number[] = [];
  rig.receivers.listener = (c, at) => {
    const t = intended.get(c);
    if (t !== undefined) {
      intended.delete(c);
      latencies.push(at - t);
    }
  };
  let saturated = false;
  let sendErrors = 0;
  const total = Math.floor((rate * ms) / 1000);
  const cpu0 = serverSideCpu(rig);
  const server0 = cpuSeconds(rig.server.pid);
  const gen0 = process.cpuUsage();
  const t0 = performance.now();
  let issued = 0;
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
    while (issued < due) {
      if (intended.size >= MAX_OUTSTANDING) {
        saturated = true;
        break;
      }
      const c = rig.ids.next++;
      intended.set(c, t0 + (issued * 1000) / rate);
      const i = issued++;
      send(rig.raw, rig.senders[i % SENDERS], sendRequest(rig.ids.make(c), body, [rig.recipients[i % 8]])).catch(() => sendErrors++);
    }
    if (saturated) break;
    await untilNextDue(t0, issued, rate);
  }
  // How long the backlog took to arrive after the offered load ended: > 1 s means the
  // instance did not sustain the offered rate (the percentiles then measure a queue).
  const offeredEnd = performance.now();
  const end = offeredEnd + 30_000;
  while (intended.size && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
  const drainMs = performance.now() - offeredEnd;
  if (process.env.BENCH_CPU_SPLIT) {
    const serverCpu = cpuSeconds(rig.server.pid) - server0;
    const natsCpu = serverSideCpu(rig) - cpu0 - serverCpu;
    const gen = process.cpuUsage(gen0);
    log(
      `${rig.label}: ${total} sends at ${rate}/s: server ${((serverCpu * 1e6) / total).toFixed(0)} us + nats-server ${((natsCpu * 1e6) / total).toFixed(0)} us CPU per message; load generator ${((gen.user + gen.system) / total).toFixed(0)} us`,
    );
  }
  rig.receivers.listener = undefined;
  await settle();
  return { latencies, saturated: saturated || intended.size > 0 || drainMs > 1000, sendErrors, drainMs };
}

/** Fills every catch-up device's mailbox with PENDING messages. */
async function fillCatchup(rig: Rig): Promise<void> {
  await sendOneEach(
    rig,
    rig.catchup.flatMap((d) => Array.from({ length: PENDING }, () => d)),
  );
}

/** One 1 KiB message to each of `to` (a device as often as it is listed), 128 Sends in flight. */
async function sendOneEach(rig: Rig, to: BenchDevice[]): Promise<void> {
  const body = new Uint8Array(1024).fill(9);
  let next = 0;
  await Promise.all(
    Array.from({ length: 128 }, async () => {
      for (let i = next++; i < to.length; i = next++) await send(rig.raw, rig.senders[i % SENDERS], sendRequest(rig.ids.make(rig.ids.next++), body, [to[i]]));
    }),
  );
}

async function routedCatchUp(rig: Rig, devices: BenchDevice[]): Promise<{ perSec: number; messages: number }> {
  let next = 0;
  let messages = 0;
  const gen0 = process.cpuUsage();
  const cpu0 = serverSideCpu(rig);
  const server0 = cpuSeconds(rig.server.pid);
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CATCHUP_CONCURRENCY }, async () => {
      for (let i = next++; i < devices.length; i = next++) {
        const n = await catchUp(rig.pool.next(), devices[i]);
        messages += n;
      }
    }),
  );
  const elapsed = performance.now() - start;
  if (process.env.BENCH_CPU_SPLIT) {
    const serverCpu = cpuSeconds(rig.server.pid) - server0;
    log(
      `${rig.label}: catch-up of ${devices.length} devices in ${(elapsed / 1000).toFixed(2)} s: server ${serverCpu.toFixed(2)} s + nats-server ${(serverSideCpu(rig) - cpu0 - serverCpu).toFixed(2)} s CPU; load generator ${(((u) => (u.user + u.system) / 1e6)(process.cpuUsage(gen0))).toFixed(2)} s`,
    );
  }
  return { perSec: (devices.length * 1000) / elapsed, messages };
}

/** A short pause so one measurement's tail (acks, deletes, GC) does not fall into the next. */
const settle = () => new Promise((r) => setTimeout(r, mode === "smoke" ? 20 : 200));

const pct = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s.length ? s[s.length - 1] : 0 };
};

/** A git worktree of `ref` with this checkout's node_modules, for the baseline server. */
function baselineWorktree(ref: string): string {
  const root = repoRoot();
  const sha = execFileSync("git", ["rev-parse", "--short", ref], { cwd: root, encoding: "utf8" }).trim();
  const dir = path.join(os.tmpdir(), `sealpost-bench-baseline-${sha}`);
  if (!fs.existsSync(dir)) execFileSync("git", ["worktree", "add", "--detach", dir, sha], { cwd: root, stdio: "ignore" });
  const nm = path.join(dir, "node_modules");
  if (!fs.existsSync(nm)) fs.symlinkSync(path.join(root, "node_modules"), nm);
  return path.join(dir, "server", "src");
}

/** What every figure group works with: the servers under test, raw JetStream, and the results. */
interface BenchRun {
  rigs: Rig[];
  raw: RawJetStream;
  nats: TestNats;
  figures: Figure[];
  extra: Record<string, unknown>;
  /** The implementation name a figure of this rig reports. */
  impl: (rig: Rig) => string;
  /** --baseline: the git ref of the other server measured beside the current one. */
  baselineRef: string | undefined;
}

/** 1. Routed messages/s vs raw publish, samples interleaved. */
async function sendRouted({ rigs, raw, figures, impl }: BenchRun): Promise<void> {
  log("send_routed");
  const rawSamples: number[] = [];
  const routed = new Map<Rig, { sends: number[]; deliveries: number[]; perCore: number[] }>(rigs.map((r) => [r, { sends: [], deliveries: [], perCore: [] }]));
  await rawPublishRate(raw, 1024, IN_FLIGHT, P.sampleMs / 3); // warm-up
  for (const r of rigs) await routedRate(r, 1024, 1, SEND_IN_FLIGHT, P.sampleMs / 3);
  for (let s = 0; s < P.samples; s++) {
    rawSamples.push(await rawPublishRate(raw, 1024, IN_FLIGHT, P.sampleMs));
    await raw.purge();
    for (const r of rigs) {
      const m = await routedRate(r, 1024, 1, SEND_IN_FLIGHT, P.sampleMs);
      routed.get(r)!.sends.push(m.sends);
      routed.get(r)!.deliveries.push(m.deliveries);
      routed.get(r)!.perCore.push(m.perServerCore);
    }
  }
  const rawRate = median(rawSamples);
  const rawRef = {
    name: `raw JetStream async publish, ${IN_FLIGHT} in flight`,
    value: round(rawRate),
    unit: "msg/s",
    samples: rawSamples.length,
    sampleValues: rawSamples.map((x) => round(x)),
  };
  for (const r of rigs) {
    const v = median(routed.get(r)!.deliveries);
    const q = ratio(v, rawRate);
    figures.push({
      name: "send_routed",
      implementation: impl(r),
      value: round(v),
      unit: "msg/s",
      samples: P.samples,
      sampleValues: routed.get(r)!.deliveries.map((x) => round(x)),
      reference: rawRef,
      ratio: q,
      ...(r.label === "current" ? { target: { row: "send_routed", description: ">= 0.7x raw JetStream publish", met: q >= 0.7 } } : {}),
      params: { body_bytes: 1024, devices_per_send: 1, sends_in_flight: SEND_IN_FLIGHT, receive_streams: 8, sends_per_s: round(median(routed.get(r)!.sends)) },
    });
    const perCore = median(routed.get(r)!.perCore);
    if (perCore > 0) {
      figures.push({
        name: "send_routed_per_server_core",
        implementation: impl(r),
        value: round(perCore),
        unit: "msg per server-side CPU second (server + nats-server)",
        samples: P.samples,
        sampleValues: routed.get(r)!.perCore.map((x) => round(x)),
        params: { body_bytes: 1024, sends_in_flight: SEND_IN_FLIGHT },
      });
    }
    log(`${r.label}: ${round(perCore)} routed msg per server-side core-second`);
    log(
      `${r.label}: send_routed ${round(v)} msg/s vs raw ${round(rawRate)} (x${q}); sends/s ${routed
        .get(r)!
        .sends.map((x) => round(x))
        .join(" ")}, deliveries/s ${routed
        .get(r)!
        .deliveries.map((x) => round(x))
        .join(" ")}`,
    );
  }
}

/**
 * 1e. At saturation: SATURATION_IN_FLIGHT unary Sends in flight, the rigs' samples interleaved.
 * Each sample's deliveries (arrivals in its window) against the Sends answered Stored in it.
 */
async function deliveriesAtSaturation({ rigs, figures, impl }: BenchRun): Promise<void> {
  log(`deliveries at saturation (${SATURATION_IN_FLIGHT} Sends in flight)`);
  const samples = new Map<Rig, { sends: number; deliveries: number; shed: number }[]>(rigs.map((r) => [r, []]));
  for (const r of rigs) await routedRate(r, 1024, 1, SATURATION_IN_FLIGHT, P.sampleMs / 3); // warm-up
  for (let i = 0; i < P.samples; i++) for (const r of rigs) samples.get(r)!.push(await routedRate(r, 1024, 1, SATURATION_IN_FLIGHT, P.sampleMs));
  for (const r of rigs) {
    const xs = samples.get(r)!;
    const q = median(xs.map((x) => (x.sends > 0 ? x.deliveries / x.sends : 0)));
    figures.push({
      name: "deliveries_at_saturation",
      implementation: impl(r),
      value: round(median(xs.map((x) => x.deliveries))),
      unit: "msg/s delivered",
      samples: xs.length,
      sampleValues: xs.map((x) => round(x.deliveries)),
      reference: {
        name: "Sends answered Stored in the same windows",
        value: round(median(xs.map((x) => x.sends))),
        unit: "msg/s",
        samples: xs.length,
        sampleValues: xs.map((x) => round(x.sends)),
      },
      ratio: round(q, 2),
      ...(r.label === "current"
        ? {
            target: { row: "deliveries_at_saturation", description: ">= 0.9x the Sends accepted, same windows (median of the samples' ratios)", met: q >= 0.9 },
          }
        : {}),
      params: { body_bytes: 1024, sends_in_flight: SATURATION_IN_FLIGHT, receive_streams: 8, shed_per_sample: round(median(xs.map((x) => x.shed))) },
    });
    log(
      `${r.label}: at saturation deliveries/s ${xs.map((x) => round(x.deliveries)).join(" ")}, sends/s ${xs.map((x) => round(x.sends)).join(" ")} (ratio ${q.toFixed(2)}), shed ${xs.map((x) => x.shed).join(" ")}`,
    );
  }
}

/** 1a. The send_routed load through SendSealed beside Send, same server, samples interleaved (current server only). */
async function sealedRouted({ rigs, figures, impl }: BenchRun): Promise<void> {
  log("sealed_send_routed");
  const cur = rigs[0];
  const key = crypto.getRandomValues(new Uint8Array(16));
  await allowSealedMail(provider, cur.server.url, cur.recipients, key);
  const plain = { deliveries: [] as number[], perCore: [] as number[] };
  const sealed = { deliveries: [] as number[], perCore: [] as number[] };
  await routedRate(cur, 1024, 1, SEND_IN_FLIGHT, P.sampleMs / 3, key); // warm-up
  for (let s = 0; s < P.samples; s++) {
    for (const [into, k] of [
      [plain, undefined],
      [sealed, key],
    ] as const) {
      const m = await routedRate(cur, 1024, 1, SEND_IN_FLIGHT, P.sampleMs, k);
      into.deliveries.push(m.deliveries);
      into.perCore.push(m.perServerCore);
    }
  }
  const v = median(sealed.deliveries);
  const ref = median(plain.deliveries);
  const q = ratio(v, ref);
  figures.push({
    name: "sealed_send_routed",
    implementation: impl(cur),
    value: round(v),
    unit: "msg/s",
    samples: P.samples,
    sampleValues: sealed.deliveries.map((x) => round(x)),
    reference: {
      name: "Send (authenticated), same server, samples interleaved",
      value: round(ref),
      unit: "msg/s",
      samples: P.samples,
      sampleValues: plain.deliveries.map((x) => round(x)),
    },
    ratio: q,
    target: { row: "sealed_send_routed", description: "sealed sends not slower than Send (>= 0.95x: within this box's noise)", met: q >= 0.95 },
    params: {
      body_bytes: 1024,
      devices_per_send: 1,
      sends_in_flight: SEND_IN_FLIGHT,
      per_server_core_sealed: round(median(sealed.perCore)),
      per_server_core_send: round(median(plain.perCore)),
    },
  });
  log(
    `${cur.label}: sealed ${round(v)} msg/s vs Send ${round(ref)} (x${q}); per server core ${round(median(sealed.perCore))} vs ${round(median(plain.perCore))}`,
  );
}

/**
 * 1b. Routed messages/s over Session streams, on every server under test (a --baseline from
 * before Session existed fails here), samples interleaved; latency on the current one.
 */
async function sessionRouted({ rigs, raw, figures, impl }: BenchRun): Promise<void> {
  log("session_routed");
  const cur = rigs[0];
  const setups = await Promise.all(
    rigs.map(async (rig) => {
      const devices = await createBenchDevices(provider, rig.server.url, `s-${Date.now().toString(36)}`, 2 * SENDERS);
      const pool = new Http2Pool(rig.server.url, 4);
      const pair = await openSessionPair(devices, (i) => pool.at(i), rig.ids);
      return { rig, pool, pair, rates: [] as number[], perCore: [] as number[] };
    }),
  );
  for (const x of setups) await sessionRate(x.rig, x.pair, P.sampleMs / 3); // warm-up
  for (let s = 0; s < P.samples; s++) {
    for (const x of setups) {
      const m = await sessionRate(x.rig, x.pair, P.sampleMs);
      x.rates.push(m.deliveries);
      x.perCore.push(m.perServerCore);
    }
  }
  if (process.env.DUMP_METRICS)
    for (const x of setups) {
      const text = await (await fetch(`${x.rig.server.url}/metrics`)).text();
      log(
        `${x.rig.label} metrics:\n${text
          .split("\n")
          .filter((l) => /appends_total |live_pushes_total |reads_total |acked_messages_total |_count\{op=/.test(l))
          .join("\n")}`,
      );
    }
  // Latency at 1k msg/s over the same sessions, beside raw publish -> PubAck at that rate.
  const pair = setups[0].pair;
  const latRate = mode === "smoke" ? 200 : 1000;
  const rawLat = pct((await rawPublishLatencies(raw!, latRate, P.latencyMs, MAX_OUTSTANDING)).latencies);
  await raw!.purge();
  const lat = await sessionLatencies(cur, pair, latRate, P.latencyMs);
  const sp = pct(lat.latencies);
  for (const q of ["p50", "p99"] as const) {
    figures.push({
      name: `session_latency_${latRate >= 1000 ? `${latRate / 1000}k` : latRate}_${q}`,
      implementation: impl(cur),
      value: round(sp[q], 2),
      unit: "ms",
      samples: lat.latencies.length,
      reference: { name: "raw JetStream publish -> PubAck, same load", value: round(rawLat[q], 2), unit: "ms", samples: 1 },
      ratio: ratio(sp[q], rawLat[q]),
      params: { offered_msg_per_s: latRate, seconds: P.latencyMs / 1000, body_bytes: 1024 },
      ...(lat.saturated ? { note: "offered rate not sustained (percentiles measure a queue)" } : {}),
    });
  }
  log(
    `${cur.label}: session latency at ${latRate}/s p50 ${sp.p50.toFixed(2)} p99 ${sp.p99.toFixed(2)} ms (raw ack p50 ${rawLat.p50.toFixed(2)} p99 ${rawLat.p99.toFixed(2)})`,
  );
  for (const { rig, pool, pair, rates, perCore } of setups) {
    await closeSessionPair(pair);
    pool.close();
    const v = median(rates);
    figures.push({
      name: "session_routed",
      implementation: impl(rig),
      value: round(v),
      unit: "msg/s",
      samples: P.samples,
      sampleValues: rates.map((x) => round(x)),
      ...(rig === cur ? { target: { row: "session_routed", description: ">= 12,000 msg/s, one process, 8 -> 8 online", met: v >= 12_000 } } : {}),
      params: { body_bytes: 1024, senders: SENDERS, receivers: SENDERS, sends_in_flight_per_session: SESSION_IN_FLIGHT },
    });
    figures.push({
      name: "session_routed_per_server_core",
      implementation: impl(rig),
      value: round(median(perCore)),
      unit: "msg per server-side CPU second (server + nats-server)",
      samples: P.samples,
      sampleValues: perCore.map((x) => round(x)),
      params: { body_bytes: 1024 },
    });
    log(`${rig.label}: session_routed ${round(v)} msg/s (${rates.map((x) => round(x)).join(" ")}); ${round(median(perCore))} per server-side core-second`);
  }
}

/** 1c. Scale out: the same Session load on one instance and spread over two instances of the current server (same NATS), samples interleaved. Half the messages cross instances. */
async function scaleOut({ rigs, nats, figures, impl }: BenchRun): Promise<void> {
  log("scale_out");
  const cur = rigs[0];
  const second = await startBenchServer({ label: "current-2", natsUrl: nats.url });
  const tag = Date.now().toString(36);
  const one = await createBenchDevices(provider, cur.server.url, `o-${tag}`, 2 * SENDERS);
  const two = await createBenchDevices(provider, cur.server.url, `t-${tag}`, 2 * SENDERS);
  const pools = [new Http2Pool(cur.server.url, 4), new Http2Pool(second.url, 4)];
  const single = await openSessionPair(one, (i) => pools[0].at(i), cur.ids);
  // Alternating instances: each receiver sits on the other instance than its sender.
  const spread = await openSessionPair(two, (i) => pools[i % 2].at(i), cur.ids);
  await sessionRate(cur, single, P.sampleMs / 3);
  await sessionRate(cur, spread, P.sampleMs / 3, [second.pid]);
  const r1: number[] = [];
  const r2: number[] = [];
  const c1: number[] = [];
  const c2: number[] = [];
  for (let i = 0; i < P.samples; i++) {
    const a = await sessionRate(cur, single, P.sampleMs);
    const b = await sessionRate(cur, spread, P.sampleMs, [second.pid]);
    r1.push(a.deliveries);
    c1.push(a.perServerCore);
    r2.push(b.deliveries);
    c2.push(b.perServerCore);
  }
  await Promise.all([single, spread].map(closeSessionPair));
  pools.forEach((p) => p.close());
  await second.stop();
  const oneRef = { name: "the same load on one instance", value: round(median(r1)), unit: "msg/s", samples: r1.length, sampleValues: r1.map((x) => round(x)) };
  for (const [n, rates, cores] of [
    [1, r1, c1],
    [2, r2, c2],
  ] as const) {
    figures.push({
      name: n === 1 ? "scaleout_one_instance" : "scaleout_two_instances",
      implementation: impl(cur),
      value: round(median(rates)),
      unit: "msg/s",
      samples: P.samples,
      sampleValues: rates.map((x) => round(x)),
      ...(n === 2 ? { reference: oneRef, ratio: ratio(median(r2), median(r1)) } : {}),
      params: { instances: n, body_bytes: 1024, sessions: 2 * SENDERS, per_server_core: round(median(cores)) },
    });
  }
  log(
    `scale_out: one instance ${round(median(r1))} msg/s (${round(median(c1))} per server core), two instances ${round(median(r2))} msg/s (${round(median(c2))} per server core)`,
  );
}

/** 1d. What metrics cost: the Session load on two fresh instances of the current server, one with metrics on (the default) and one with --metrics off, samples interleaved. */
async function metricsOverhead({ rigs, nats, figures, impl }: BenchRun): Promise<void> {
  log("metrics_overhead");
  const cur = rigs[0];
  const withServer = await startBenchServer({ label: "metrics-on", natsUrl: nats.url });
  const bare = await startBenchServer({ label: "metrics-off", natsUrl: nats.url, serverArgs: ["--metrics", "off"] });
  const onRig: Rig = { ...cur, label: "metrics-on", server: withServer };
  const off: Rig = { ...cur, label: "metrics-off", server: bare };
  const tag = Date.now().toString(36);
  const setup = async (rig: Rig, prefix: string) => {
    const devices = await createBenchDevices(provider, rig.server.url, `${prefix}-${tag}`, 2 * SENDERS);
    const pool = new Http2Pool(rig.server.url, 4);
    return { pair: await openSessionPair(devices, (i) => pool.at(i), cur.ids), pool };
  };
  const on = await setup(onRig, "mon");
  const bareSetup = await setup(off, "moff");
  await sessionRate(onRig, on.pair, P.sampleMs / 3);
  await sessionRate(off, bareSetup.pair, P.sampleMs / 3);
  const withM: number[] = [];
  const without: number[] = [];
  for (let i = 0; i < P.samples; i++) {
    // Alternate which goes first, so neither always runs on a warmer box.
    const order = i % 2 === 0 ? [true, false] : [false, true];
    for (const metricsOn of order) {
      if (metricsOn) withM.push((await sessionRate(onRig, on.pair, P.sampleMs)).perServerCore);
      else without.push((await sessionRate(off, bareSetup.pair, P.sampleMs)).perServerCore);
    }
  }
  for (const s of [on, bareSetup]) {
    await closeSessionPair(s.pair);
    s.pool.close();
  }
  await Promise.all([bare.stop(), withServer.stop()]);
  const overhead = 1 - median(withM) / median(without);
  figures.push({
    name: "metrics_overhead",
    implementation: impl(cur),
    value: round(overhead * 100, 1),
    unit: "% fewer routed msg per server-side CPU second with metrics on (Session load)",
    samples: P.samples,
    sampleValues: withM.map((x, i) => round((1 - x / without[i]) * 100, 1)),
    reference: {
      name: "the same server with --metrics off, samples interleaved",
      value: round(median(without)),
      unit: "msg per server-side CPU second",
      samples: without.length,
      sampleValues: without.map((x) => round(x)),
    },
    target: { row: "metrics_overhead", description: "< 5% of routed msg per server-side CPU second", met: overhead < 0.05 },
    params: { with_metrics: round(median(withM)), body_bytes: 1024 },
  });
  log(`metrics: ${round(median(withM))} vs ${round(median(without))} msg per server-side core-second with/without (${(overhead * 100).toFixed(1)}% overhead)`);
}

/** 2. Latency at fixed offered loads. */
async function latency({ rigs, raw, figures, impl }: BenchRun): Promise<void> {
  const rates = process.env.BENCH_RATES ? process.env.BENCH_RATES.split(",").map(Number) : P.rates;
  for (const rate of rates) {
    log(`latency at ${rate} msg/s`);
    const rawLat = await rawPublishLatencies(raw, rate, P.latencyMs, MAX_OUTSTANDING);
    await raw.purge();
    const rp = pct(rawLat.latencies);
    for (const r of rigs) {
      const m = await routedLatencies(r, rate, P.latencyMs);
      const sp = pct(m.latencies);
      const tag = rate >= 1000 ? `${rate / 1000}k` : String(rate);
      for (const q of ["p50", "p95", "p99", "max"] as const) {
        const f: Figure = {
          name: `latency_${tag}_${q}`,
          implementation: impl(r),
          value: round(sp[q], 2),
          unit: "ms",
          samples: m.latencies.length,
          reference: { name: "raw JetStream publish -> PubAck, same load", value: round(rp[q], 2), unit: "ms", samples: rawLat.latencies.length },
          ratio: ratio(sp[q], rp[q]),
          params: { offered_msg_per_s: rate, seconds: P.latencyMs / 1000, body_bytes: 1024 },
        };
        if (m.saturated || m.sendErrors) {
          f.note = `offered rate not sustained: the backlog arrived ${(m.drainMs / 1000).toFixed(1)} s after the load ended (percentiles measure a queue); send errors: ${m.sendErrors}`;
        }
        if (rate === 1000 && r.label === "current" && (q === "p50" || q === "p99")) {
          const limit = q === "p50" ? 2 : 5;
          f.target = { row: "latency_1k", description: `${q} < ${limit} ms`, met: sp[q] < limit && !m.saturated };
        }
        figures.push(f);
      }
      log(
        `${r.label}: ${rate}/s p50 ${sp.p50.toFixed(2)} p99 ${sp.p99.toFixed(2)} max ${sp.max.toFixed(1)} ms (raw ack p50 ${rp.p50.toFixed(2)} p99 ${rp.p99.toFixed(2)})`,
      );
    }
  }
}

/** 3. Reconnect with catch-up, batches interleaved with the raw equivalent. */
/**
 * Fills every catch-up device's mailbox the way mail reaches an offline device in a live
 * deployment: one message per device per round and, before each round, a share of
 * `background` messages of other devices that never connect. Each device's messages then lie
 * spread over its partition's stream instead of side by side (fillCatchup's order).
 */
async function fillSpread(rigs: Rig[], raw: RawJetStream, background: number): Promise<void> {
  const share = Math.ceil(background / PENDING);
  for (let round = 0; round < PENDING; round++) {
    await fillBackgroundMail(raw, round * share, share);
    for (const r of rigs) await sendOneEach(r, r.catchup);
  }
}

/**
 * Catch-up samples of every rig over the catch-up devices in P.catchupBatches batches; the
 * optional raw reference is sampled over the same batch (its first device and count).
 */
async function catchUpSamples(
  rigs: Rig[],
  rawSample?: (first: number, count: number) => Promise<number>,
): Promise<{ cu: Map<Rig, number[]>; raw: number[]; delivered: number }> {
  const per = CATCHUP_PER_SAMPLE;
  const cu = new Map<Rig, number[]>(rigs.map((r) => [r, []]));
  const rawSamples: number[] = [];
  let delivered = 0;
  for (let b = 0; b < P.catchupBatches; b++) {
    if (rawSample) rawSamples.push(await rawSample(b * per, per));
    // Each batch's mail of every rig lies in the same blocks of the same streams: the rig
    // that reads second finds them in nats-server's cache. Alternate who goes first.
    for (const r of b % 2 ? [...rigs].reverse() : rigs) {
      const m = await routedCatchUp(r, r.catchup.slice(b * per, (b + 1) * per));
      delivered += m.messages;
      cu.get(r)!.push(m.perSec);
    }
    await settle();
  }
  return { cu, raw: rawSamples, delivered };
}

async function reconnectCatchup({ rigs, raw, figures, impl }: BenchRun): Promise<void> {
  log("reconnect_catchup: filling mailboxes");
  for (const r of rigs) await fillCatchup(r);
  await rawFill(raw, 0, P.catchupDevices, PENDING);
  const per = CATCHUP_PER_SAMPLE;
  const { cu, raw: rawCu, delivered } = await catchUpSamples(rigs, async (first, count) => (await rawCatchUp(raw, first, count, CATCHUP_CONCURRENCY)).perSec);
  await raw.purge();
  for (const r of rigs) {
    const v = median(cu.get(r)!);
    figures.push({
      name: "reconnect_catchup",
      implementation: impl(r),
      value: round(v),
      unit: "devices/s",
      samples: cu.get(r)!.length,
      sampleValues: cu.get(r)!.map((x) => round(x)),
      reference: {
        name: "JetStream alone: direct gets + deletes",
        value: round(median(rawCu)),
        unit: "devices/s",
        samples: rawCu.length,
        sampleValues: rawCu.map((x) => round(x)),
      },
      ratio: ratio(v, median(rawCu)),
      ...(r.label === "current" ? { target: { row: "reconnect_catchup", description: ">= 1,000 devices/s", met: v >= 1000 } } : {}),
      params: { pending_each: PENDING, devices_per_sample: per, concurrent_devices: CATCHUP_CONCURRENCY },
      note: `open Receive (existing token), read until Drained, one Ack of all, close; ${delivered} messages read in total (all rigs)`,
    });
    log(`${r.label}: catch-up ${round(v)} devices/s (raw ${round(median(rawCu))})`);
  }

  // The same devices again, their mail spread among other devices' mail as in a live
  // deployment: what a reconnect costs when its mailbox is not side by side in the stream.
  log(`reconnect_catchup_spread: filling mailboxes among ${P.spreadBackground} messages of other devices`);
  await fillSpread(rigs, raw, P.spreadBackground);
  const stored = await raw.mailboxMessages();
  const spread = await catchUpSamples(rigs);
  await purgeBackgroundMail(raw);
  for (const r of rigs) {
    const v = median(spread.cu.get(r)!);
    const side = median(cu.get(r)!);
    figures.push({
      name: "reconnect_catchup_spread",
      implementation: impl(r),
      value: round(v),
      unit: "devices/s",
      samples: spread.cu.get(r)!.length,
      sampleValues: spread.cu.get(r)!.map((x) => round(x)),
      reference: {
        name: "the same server and devices, mail side by side (reconnect_catchup)",
        value: round(side),
        unit: "devices/s",
        samples: cu.get(r)!.length,
      },
      ratio: ratio(v, side),
      params: {
        pending_each: PENDING,
        devices_per_sample: per,
        concurrent_devices: CATCHUP_CONCURRENCY,
        background_messages: P.spreadBackground,
        mailbox_partitions: stored.partitions,
        stored_messages_at_start: stored.messages,
      },
      note: "each device's 10 messages arrive one per round, between rounds other (never connecting) devices' mail: spread over the partition's stream as mail for an offline device is",
    });
    log(
      `${r.label}: catch-up, mail spread ${round(v)} devices/s (side by side ${round(side)}; ${stored.messages} messages in ${stored.partitions} mailbox streams)`,
    );
  }
}

/** 4. Scaling: devices per Send and body size (current server only). */
async function scaling({ rigs, raw, figures, impl }: BenchRun): Promise<void> {
  const cur = rigs[0];
  for (const n of DEVICES_PER_SEND) {
    const rawN = await rawPublishRate(raw, 1024, IN_FLIGHT, P.scaleMs);
    await raw.purge();
    const m = await routedRate(cur, 1024, n, Math.max(8, Math.floor(SEND_IN_FLIGHT / n)), P.scaleMs);
    figures.push({
      name: `scale_devices_${n}`,
      implementation: impl(cur),
      value: round(m.deliveries),
      unit: "deliveries/s",
      samples: 1,
      reference: { name: "raw JetStream async publish 1 KiB", value: round(rawN), unit: "msg/s", samples: 1 },
      ratio: ratio(m.deliveries, rawN),
      params: { devices_per_send: n, sends_per_s: round(m.sends), body_bytes: 1024, sends_in_flight: Math.max(8, Math.floor(SEND_IN_FLIGHT / n)) },
      note: n > 1 && 1024 * (n - 1) > 8192 ? "body stored once in SP_BODIES, one record per device" : "body inlined in each device's record",
    });
    log(`devices/send ${n}: ${round(m.sends)} sends/s, ${round(m.deliveries)} deliveries/s (raw ${round(rawN)})`);
  }
  for (const size of SIZES) {
    const inFlight = Math.max(8, Math.min(SEND_IN_FLIGHT, Math.floor((8 * 1024 * 1024) / size)));
    const rawS = await rawPublishRate(raw, size, Math.max(8, Math.min(IN_FLIGHT, Math.floor((8 * 1024 * 1024) / size))), P.scaleMs);
    await raw.purge();
    const m = await routedRate(cur, size, 1, inFlight, P.scaleMs);
    figures.push({
      name: `scale_size_${size}`,
      implementation: impl(cur),
      value: round(m.deliveries),
      unit: "msg/s",
      samples: 1,
      reference: { name: `raw JetStream async publish ${size} B`, value: round(rawS), unit: "msg/s", samples: 1 },
      ratio: ratio(m.deliveries, rawS),
      params: { body_bytes: size, in_flight: inFlight, MiB_per_s: round((m.deliveries * size) / 2 ** 20, 1) },
    });
    log(`size ${size}: ${round(m.deliveries)} msg/s (raw ${round(rawS)})`);
  }
}

/** 5. Idle Receive streams: server RSS (current server only; fresh accounts, no traffic). */
async function idleStreams({ rigs, nats, figures, extra, impl, baselineRef }: BenchRun): Promise<void> {
  const cur = rigs[0];
  log(`idle streams: creating ${P.idleStreams} devices`);
  const idle = await createBenchDevices(provider, cur.server.url, `i-${Date.now().toString(36)}`, P.idleStreams, 64);
  for (const r of rigs) await r.receivers.close();
  // A fresh instance each time (stateless: any instance serves any device), so its RSS is
  // the streams' and not what earlier load left in the heap.
  const measureIdle = async (devices: BenchDevice[], conns: number, serverSrc?: string, settleMs = 0) => {
    const server = await startBenchServer({ label: "idle", natsUrl: nats.url, serverSrc });
    await new Promise((r) => setTimeout(r, mode === "smoke" ? 200 : 2000));
    const before = await server.stats();
    const rssBefore = server.rss();
    const pool = new Http2Pool(server.url, conns);
    const receivers = new Receivers(pool, cur.ids);
    const half = Math.floor(devices.length / 2);
    const t = performance.now();
    await receivers.open(devices.slice(0, half));
    const openSec1 = (performance.now() - t) / 1000;
    await new Promise((r) => setTimeout(r, IDLE_PAUSE_MS));
    const mid = await server.stats();
    const rssMid = server.rss();
    const t2 = performance.now();
    await receivers.open(devices.slice(half), half);
    const openSec = openSec1 + (performance.now() - t2) / 1000;
    await new Promise((r) => setTimeout(r, IDLE_PAUSE_MS));
    const after = await server.stats();
    const rssAfter = server.rss();
    // Idle for a while: the heap the opening burst grew is given back (V8's memory reducer)
    // within ~10 s here, and what stays is what the idle streams hold.
    let settled = after;
    let rssSettled = rssAfter;
    if (settleMs > 0) {
      await new Promise((r) => setTimeout(r, settleMs));
      settled = await server.stats();
      rssSettled = server.rss();
    }
    await receivers.close();
    pool.close();
    await server.stop();
    // The second half's cost: what one more stream costs once the heap's young generation
    // and the connections' buffers (fixed costs, grown while the first half opened) are there.
    const marginalKiB = (rssAfter - rssMid) / 1024 / (devices.length - half);
    const marginalHeapKiB = (after.heapUsed - mid.heapUsed) / 1024 / (devices.length - half);
    return { before, after, rssBefore, rssAfter, settled, rssSettled, openSec, marginalKiB, marginalHeapKiB };
  };
  const conns = Math.max(1, Math.ceil(P.idleStreams / 500));
  const { before, after, rssBefore, rssAfter, settled, rssSettled, openSec, marginalKiB, marginalHeapKiB } = await measureIdle(
    idle,
    conns,
    undefined,
    P.idleSettleMs,
  );
  const perStreamKiB = (rssSettled - rssBefore) / 1024 / P.idleStreams;
  // As real clients connect: one HTTP/2 connection per device (fewer streams: sockets are
  // the load generator's limit here too).
  const eachCount = Math.min(P.idleStreams, 2_000);
  const each = await measureIdle(idle.slice(0, eachCount), eachCount);
  const eachKiB = (each.rssAfter - each.rssBefore) / 1024 / eachCount;
  // Per stream as the shared-connection figure counts it: what one more stream (with its own
  // connection) adds, once the process's fixed costs (young generation, heap growth, ~70 MB
  // at any count) are there; the average over the streams, fixed costs included, beside it.
  figures.push({
    name: "idle_streams_rss_connection_each",
    implementation: impl(cur),
    value: round(each.marginalKiB, 1),
    unit: "KiB RSS per additional idle Receive stream (one HTTP/2 connection each)",
    samples: 1,
    params: {
      streams: eachCount,
      connections: eachCount,
      rss_before_MB: round(each.rssBefore / 2 ** 20, 1),
      rss_after_MB: round(each.rssAfter / 2 ** 20, 1),
      average_KiB: round(eachKiB, 1),
      marginal_heap_KiB: round(each.marginalHeapKiB, 1),
    },
    target: { row: "idle_stream_kib", description: "<= 25 KiB RSS per idle stream, one connection each", met: each.marginalKiB <= 25 },
    note: "value: RSS growth while the second half of the streams opened, after a GC, per stream (as idle_stream_marginal_rss); average_KiB = (RSS after - RSS before) / streams, the process's fixed costs included",
  });
  log(
    `idle streams, one connection each: ${eachCount} streams, RSS ${round(each.rssBefore / 2 ** 20)} -> ${round(each.rssAfter / 2 ** 20)} MB (${eachKiB.toFixed(1)} KiB/stream; marginal ${each.marginalKiB.toFixed(1)} KiB RSS, ${each.marginalHeapKiB.toFixed(1)} KiB heap)`,
  );
  // The baseline's marginal cost, same devices, same method (before/after in one run).
  const base = baselineRef ? await measureIdle(idle, conns, baselineWorktree(baselineRef)) : undefined;
  if (base) log(`baseline-${baselineRef}: idle streams marginal ${base.marginalKiB.toFixed(1)} KiB RSS, ${base.marginalHeapKiB.toFixed(1)} KiB heap`);
  figures.push({
    name: "idle_stream_marginal_rss",
    ...(base
      ? {
          reference: {
            name: `sealpost-server@baseline-${baselineRef}, same method`,
            value: round(base.marginalKiB, 1),
            unit: "KiB RSS per additional idle stream",
            samples: 1,
          },
        }
      : {}),
    implementation: impl(cur),
    value: round(marginalKiB, 1),
    unit: "KiB RSS per additional idle Receive stream (streams sharing connections)",
    samples: 1,
    params: {
      streams: P.idleStreams,
      connections: conns,
      marginal_heap_KiB: round(marginalHeapKiB, 1),
      connection_each_marginal_KiB: round(each.marginalKiB, 1),
    },
    target: { row: "idle_stream_kib", description: "<= 25 KiB RSS per idle stream", met: marginalKiB <= 25 },
    note: "RSS growth while the second half of the streams opened, after a GC, divided by their number: the fixed costs (young generation, connections) grown during the first half are excluded",
  });
  const rssAt10k = (rssBefore + perStreamKiB * 1024 * 10_000) / 2 ** 20;
  figures.push({
    name: "idle_streams_rss",
    implementation: impl(cur),
    value: round(rssSettled / 2 ** 20, 1),
    unit: "MB RSS",
    samples: 1,
    reference: { name: "same (fresh) server before opening the streams", value: round(rssBefore / 2 ** 20, 1), unit: "MB RSS", samples: 1 },
    ratio: ratio(rssSettled, 300 * 2 ** 20),
    target: {
      row: "idle_streams_rss",
      description:
        P.idleStreams >= 10_000 ? "RSS < 300 MB with 10k streams" : `RSS < 300 MB, extrapolated from ${P.idleStreams} streams: ${round(rssAt10k)} MB at 10k`,
      met: (P.idleStreams >= 10_000 ? rssSettled / 2 ** 20 : rssAt10k) < 300,
    },
    params: {
      streams: P.idleStreams,
      connections: conns,
      open_seconds: round(openSec, 1),
      per_stream_KiB: round(perStreamKiB, 1),
      idle_seconds: round((P.idleSettleMs + IDLE_PAUSE_MS) / 1000, 1),
      // Right after the last stream opened (after a GC): the opening burst's heap growth still
      // committed. What a mass reconnect needs for a while (OPERATIONS.md).
      rss_just_opened_MB: round(rssAfter / 2 ** 20, 1),
      heap_used_MB: round(settled.heapUsed / 2 ** 20, 1),
      heap_used_before_MB: round(before.heapUsed / 2 ** 20, 1),
      // Committed but unused after a GC: the old space's free pages (fragmentation left by
      // the opening burst) and the young generation, grown during the burst.
      old_space_free_MB: round(spaceFree(settled, "old_space") / 2 ** 20, 1),
      new_space_MB: round((settled.spaces.find((s) => s.name === "new_space")?.physical ?? 0) / 2 ** 20, 1),
      old_space_free_just_opened_MB: round(spaceFree(after, "old_space") / 2 ** 20, 1),
    },
    note: "value: RSS (after a GC) once the streams have been idle for idle_seconds; rss_just_opened_MB: the same 3 s after the last one opened. ratio = RSS / 300 MB (the target); MB = MiB",
  });
  log(
    `idle streams: ${P.idleStreams} open in ${openSec.toFixed(1)} s, RSS ${round(rssBefore / 2 ** 20)} -> ${round(rssAfter / 2 ** 20)} MB just opened, ${round(rssSettled / 2 ** 20)} MB idle ${((P.idleSettleMs + IDLE_PAUSE_MS) / 1000).toFixed(0)} s (${perStreamKiB.toFixed(1)} KiB/stream; marginal ${marginalKiB.toFixed(1)} KiB RSS, ${marginalHeapKiB.toFixed(1)} KiB heap)`,
  );
  extra.idle_streams = {
    streams: P.idleStreams,
    rss_before: rssBefore,
    rss_just_opened: rssAfter,
    rss_idle: rssSettled,
    heap_before: before.heapUsed,
    heap_after: settled.heapUsed,
  };
}

/** Physical size minus used size of one V8 heap space. */
function spaceFree(m: ServerMemory, name: string): number {
  const s = m.spaces.find((x) => x.name === name);
  return s ? s.physical - s.used : 0;
}

async function main(): Promise<void> {
  const started = Date.now();
  const machine = machineInfo(true);
  const baselineRef = arg("--baseline");
  const profileDir = process.argv.includes("--profile") ? path.join(os.tmpdir(), "sealpost-bench-profiles") : undefined;
  if (profileDir) fs.mkdirSync(profileDir, { recursive: true });
  const nats: TestNats = await startTestNats({ forceOwn: true });
  natsPid = nats.pid;
  const rigs: Rig[] = [];
  let raw: RawJetStream | undefined;
  const figures: Figure[] = [];
  const extra: Record<string, unknown> = {};
  try {
    rigs.push(await makeRig("current", nats.url, undefined, profileDir));
    if (baselineRef) rigs.push(await makeRig(`baseline-${baselineRef}`, nats.url, baselineWorktree(baselineRef), profileDir));
    raw = await openRawJetStream(nats.url);
    const impl = (rig: Rig) => (rig.label === "current" ? "sealpost-server" : `sealpost-server@${rig.label}`);
    const run: BenchRun = { rigs, raw, nats, figures, extra, impl, baselineRef };

    if (want("send_routed")) await sendRouted(run);
    if (want("saturation")) await deliveriesAtSaturation(run);
    if (want("sealed")) await sealedRouted(run);
    if (want("session_routed")) await sessionRouted(run);
    if (want("scale_out")) await scaleOut(run);
    if (want("metrics")) await metricsOverhead(run);
    if (want("latency")) await latency(run);
    if (want("catchup")) await reconnectCatchup(run);
    if (want("scale")) await scaling(run);
    if (want("idle")) await idleStreams(run);
  } finally {
    for (const r of rigs) {
      await r.receivers.close().catch(() => {});
      r.receivePool.close();
      r.pool.close();
      r.raw.close();
      await r.server.stop();
    }
    await raw?.close();
    await nats.stop();
  }

  const result: BenchResult = {
    benchmark: "server",
    mode,
    date: new Date().toISOString(),
    durationSec: round((Date.now() - started) / 1000, 1),
    machine,
    versions: {
      "@connectrpc/connect-node": packageVersion("@connectrpc/connect-node"),
      "@nats-io/jetstream": packageVersion("@nats-io/jetstream"),
      ...(baselineRef ? { baseline: baselineRef } : {}),
    },
    method:
      `own nats-server (file storage, R1) and the server in its own process, load from this process over HTTP/2 (Connect binary, 8 connections); ` +
      `throughput: ${P.samples} samples of ${P.sampleMs} ms interleaved with the raw reference, median; latency: open loop for ${P.latencyMs} ms per offered load, ` +
      `measured from the intended send time; catch-up: ${P.catchupBatches} batches interleaved with the raw reference`,
    figures,
    extra,
  };
  machine.loadavg.end = loadAverageNow();
  const out = writeResult(MERGE ? mergeResult(readResult("server"), result) : result);
  log(`wrote ${path.relative(process.cwd(), out)}${MERGE ? ` (${GROUPS.join(",")} merged into the last full run)` : ""}`);
}

await main();
