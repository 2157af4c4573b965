/**
 * sealpost beside ejabberd (Debian's XMPP server, what many of our users would run instead),
 * same box, same run, samples interleaved, 1 KiB messages:
 *
 *   peer_online_routed   msg/s from 8 senders to 8 online receivers, closed loop (64 in flight
 *                        per implementation), and per server-side CPU second (sealpost:
 *                        server + nats-server; ejabberd: its VM); sealpost twice: over unary
 *                        Send and Receive, and over Session streams (one per device, as an
 *                        XMPP client keeps one stream: the like-for-like figure)
 *   peer_offline_store   msg/s to 8 devices / users that are not connected (sealpost: Sends
 *                        answered Stored; XMPP: counted at an in-order ping's answer)
 *   peer_catchup         devices/s that reconnect and take their 10 pending messages (64 at
 *                        a time; XMPP: connect, log in, bind, presence, 10 offline messages;
 *                        sealpost: Receive with the device's token, until Drained, one Ack;
 *                        rounds alternate the two sides, the median round of each)
 *
 *   npx tsx bench/src/peer-bench.ts [--smoke|--quick]
 *
 * Skipped, with a note in bench/results/peer.json, when ejabberd is not installed
 * (apt-get install -y ejabberd; it runs on its own config and port, see peer/ejabberd.ts).
 */
import { randomBytes } from "node:crypto";
import { createNodeProvider } from "@sealpost/client/crypto";
import { startTestNats } from "@sealpost/test-support";
import { cpuSeconds } from "./proc-cpu.js";
import { benchMode, machineInfo, median, natsServerVersion, packageVersion, ratio, round, writeResult, type Figure } from "./result.js";
import { createBenchDevices, type BenchDevice } from "./server/bench-accounts.js";
import { catchUp, MessageIds, Receivers, send, sendRequest } from "./server/delivery-load.js";
import { startBenchServer } from "./server/server-process.js";
import { BenchSession } from "./server/session-load.js";
import { RawUnaryPool } from "./server/raw-unary.js";
import { Http2Pool } from "./server/raw-http2.js";
import { EJABBERD_DOMAIN, ejabberdVersion, startEjabberd, type Ejabberd } from "./peer/ejabberd.js";
import { XmppClient } from "./peer/xmpp-client.js";

const mode = benchMode();
const P = {
  smoke: { samples: 1, sampleMs: 300, catchupDevices: 20 },
  quick: { samples: 3, sampleMs: 1000, catchupDevices: 200 },
  // Catch-up: 5 rounds of 300 devices each side (3 rounds of ~170 varied by 10-20% a run).
  full: { samples: 5, sampleMs: 2500, catchupDevices: 1500 },
}[mode];
const PAIRS = 8;
const IN_FLIGHT = 64;
const PENDING = 10;
const CATCHUP_CONCURRENCY = 64;
const BODY = randomBytes(768).toString("base64"); // 1 KiB of text, as an XMPP body must be
const log = (m: string) => console.log(`[peer-bench] ${m}`);
const SP_BODY = new Uint8Array(1024).fill(9);

/**
 * Closed loop on the sealpost side: IN_FLIGHT workers run `op(i)` for `ms`. Rate: what
 * `count` grew by during the loop; per core: what it grew by once `settle(target)` (the
 * count every op should reach, e.g. deliveries still on their way) returned, over the CPU
 * `cpu` measured meanwhile.
 */
async function closedLoop(o: {
  ms: number;
  op: (i: number) => Promise<void>;
  count: () => number;
  cpu: () => number;
  settle?: (target: number) => Promise<unknown>;
}): Promise<{ perSec: number; perCore: number }> {
  const c0 = o.count();
  const cpu0 = o.cpu();
  let k = 0;
  const start = performance.now();
  const end = start + o.ms;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < end) await o.op(k++);
    }),
  );
  const elapsed = performance.now() - start;
  const got = o.count() - c0;
  await o.settle?.(c0 + k);
  const cpu = o.cpu() - cpu0;
  return { perSec: (got * 1000) / elapsed, perCore: cpu > 0 ? (o.count() - c0) / cpu : 0 };
}

/** Closed loop over XMPP: `IN_FLIGHT` messages outstanding across the senders, for `ms`. */
async function xmppRate(
  senders: XmppClient[],
  receivers: XmppClient[],
  users: string[],
  pid: number,
  ms: number,
): Promise<{ perSec: number; perCore: number }> {
  let outstanding = 0;
  let delivered = 0;
  let next = 0;
  let release: (() => void) | undefined;
  for (const r of receivers)
    r.onMessage = () => {
      delivered++;
      outstanding--;
      release?.();
    };
  const cpu0 = cpuSeconds(pid);
  const start = performance.now();
  const end = start + ms;
  while (performance.now() < end) {
    while (outstanding < IN_FLIGHT) {
      const i = next++;
      senders[i % PAIRS].message(`${users[i % PAIRS]}@${EJABBERD_DOMAIN}/bench`, `m${i}`, BODY);
      outstanding++;
    }
    await new Promise<void>((r) => (release = r));
  }
  const elapsed = performance.now() - start;
  const got = delivered;
  const deadline = performance.now() + 30_000;
  while (outstanding > 0 && performance.now() < deadline) await new Promise<void>((r) => (release = r));
  const cpu = cpuSeconds(pid) - cpu0;
  return { perSec: (got * 1000) / elapsed, perCore: cpu > 0 ? delivered / cpu : 0 };
}

async function main(): Promise<void> {
  const started = Date.now();
  // Read now: the load average at the start of the run (writeResult adds the one at its end).
  const machine = machineInfo(true);
  const version = ejabberdVersion();
  if (!version) {
    log("ejabberd is not installed: skipped (apt-get install -y ejabberd)");
    writeResult({
      benchmark: "peer",
      mode,
      date: new Date().toISOString(),
      durationSec: 0,
      machine: machineInfo(),
      versions: {},
      method: "skipped: ejabberd is not installed on this machine",
      figures: [],
    });
    return;
  }
  const nats = await startTestNats({ forceOwn: true });
  const server = await startBenchServer({ label: "peer", natsUrl: nats.url });
  let ejabberd: Ejabberd | undefined;
  const figures: Figure[] = [];
  try {
    ejabberd = await startEjabberd();
    log(`ejabberd ${ejabberd.version} on port ${ejabberd.port}; sealpost at ${server.url}`);
    const tag = Date.now().toString(36);

    // Online routed: 8 -> 8 on both.
    const provider = createNodeProvider();
    const devices = await createBenchDevices(provider, server.url, `peer-${tag}`, 2 * PAIRS);
    const spSenders = devices.slice(0, PAIRS);
    const spReceivers = devices.slice(PAIRS);
    const pool = new Http2Pool(server.url, 8);
    // Unary Sends through the lean client (raw-unary.ts): connect-node's client would be the limit.
    const raw = new RawUnaryPool(server.url, 8);
    const ids = new MessageIds();
    const receivers = new Receivers(pool, ids);
    await receivers.open(spReceivers);
    const users = Array.from({ length: PAIRS }, (_, i) => `r${tag}${i}`);
    const xSenders = await Promise.all(Array.from({ length: PAIRS }, (_, i) => XmppClient.login(ejabberd!.port, EJABBERD_DOMAIN, `s${tag}${i}`, "pw")));
    const xReceivers = await Promise.all(users.map((u) => XmppClient.login(ejabberd!.port, EJABBERD_DOMAIN, u, "pw")));
    const serverCpu = () => cpuSeconds(server.pid) + cpuSeconds(nats.pid);
    const sealpostRate = (ms: number) =>
      closedLoop({
        ms,
        op: (i) => send(raw, spSenders[i % PAIRS], sendRequest(ids.make(ids.next++), SP_BODY, [spReceivers[i % PAIRS]])),
        count: () => receivers.arrivals,
        cpu: serverCpu,
        settle: (target) => receivers.waitFor(target, 30_000),
      });
    // The same over Session streams: devices of their own (a session's mailbox would replace the Receive streams above).
    const sessionDevices = await createBenchDevices(provider, server.url, `peer-s-${tag}`, 2 * PAIRS);
    const sessionPool = new Http2Pool(server.url, 8);
    const sessionSenders = sessionDevices.slice(0, PAIRS).map((d, i) => new BenchSession(sessionPool.at(i), d, ids));
    const sessionReceivers = sessionDevices.slice(PAIRS).map((d, i) => new BenchSession(sessionPool.at(i + 1), d, ids));
    await Promise.all(sessionReceivers.map((r) => r.receive()));
    const sessionArrivals = () => sessionReceivers.reduce((n, r) => n + r.arrivals, 0);
    const sessionRate = (ms: number) =>
      closedLoop({
        ms,
        op: (i) => sessionSenders[i % PAIRS].send(sendRequest(ids.make(ids.next++), SP_BODY, [sessionDevices[PAIRS + (i % PAIRS)]])),
        count: sessionArrivals,
        cpu: serverCpu,
        settle: async (target) => {
          const deadline = performance.now() + 30_000;
          while (sessionArrivals() < target && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        },
      });
    await sealpostRate(P.sampleMs / 3);
    await sessionRate(P.sampleMs / 3);
    await xmppRate(xSenders, xReceivers, users, ejabberd.pid, P.sampleMs / 3);
    const sp: { perSec: number; perCore: number }[] = [];
    const ss: { perSec: number; perCore: number }[] = [];
    const xm: { perSec: number; perCore: number }[] = [];
    for (let s = 0; s < P.samples; s++) {
      sp.push(await sealpostRate(P.sampleMs));
      ss.push(await sessionRate(P.sampleMs));
      xm.push(await xmppRate(xSenders, xReceivers, users, ejabberd.pid, P.sampleMs));
    }
    for (const x of [...sessionSenders, ...sessionReceivers]) await x.close();
    sessionPool.close();
    const spRate = median(sp.map((x) => x.perSec));
    const xmRate = median(xm.map((x) => x.perSec));
    const spCore = median(sp.map((x) => x.perCore));
    const xmCore = median(xm.map((x) => x.perCore));
    log(`online routed: sealpost ${round(spRate)} msg/s (${round(spCore)} per server-side core-second), ejabberd ${round(xmRate)} msg/s (${round(xmCore)})`);
    const ejRef = (value: number, unit: string, n: number) => ({
      name: `ejabberd ${ejabberd!.version}, same box, samples interleaved`,
      value: round(value),
      unit,
      samples: n,
    });
    figures.push({
      name: "peer_online_routed",
      implementation: "sealpost-server (unary Send)",
      value: round(spRate),
      unit: "msg/s",
      samples: sp.length,
      sampleValues: sp.map((x) => round(x.perSec)),
      reference: ejRef(xmRate, "msg/s", xm.length),
      ratio: ratio(spRate, xmRate),
      params: { senders: PAIRS, receivers: PAIRS, in_flight: IN_FLIGHT, bytes: 1024 },
    });
    figures.push({
      name: "peer_online_routed_per_core",
      implementation: "sealpost-server (unary Send)",
      value: round(spCore),
      unit: "msg per server-side CPU second",
      samples: sp.length,
      reference: ejRef(xmCore, "msg per CPU second of the ejabberd VM", xm.length),
      ratio: ratio(spCore, xmCore),
      note: "sealpost: server + nats-server CPU; ejabberd: its Erlang VM; the load generator excluded on both",
    });
    const ssRate = median(ss.map((x) => x.perSec));
    const ssCore = median(ss.map((x) => x.perCore));
    log(`online routed over Session streams: sealpost ${round(ssRate)} msg/s (${round(ssCore)} per server-side core-second)`);
    figures.push({
      name: "peer_online_routed_session",
      implementation: "sealpost-server (Session streams)",
      value: round(ssRate),
      unit: "msg/s",
      samples: ss.length,
      sampleValues: ss.map((x) => round(x.perSec)),
      reference: ejRef(xmRate, "msg/s", xm.length),
      ratio: ratio(ssRate, xmRate),
      params: { senders: PAIRS, receivers: PAIRS, in_flight: IN_FLIGHT, bytes: 1024 },
    });
    figures.push({
      name: "peer_online_routed_session_per_core",
      implementation: "sealpost-server (Session streams)",
      value: round(ssCore),
      unit: "msg per server-side CPU second",
      samples: ss.length,
      reference: ejRef(xmCore, "msg per CPU second of the ejabberd VM", xm.length),
      ratio: ratio(ssCore, xmCore),
      target: { row: "per_core_vs_peer", description: ">= ejabberd's, same run", met: ssCore >= xmCore },
      note: "one stream per device on both sides (an XMPP client stream, a sealpost Session); sealpost: server + nats-server CPU; ejabberd: its Erlang VM; the load generator excluded on both",
    });
    await receivers.close();
    for (const c of [...xSenders, ...xReceivers]) c.close();

    // Offline store: the same 1 KiB to 8 devices / users that are not connected, 64 in flight.
    const offlineDevices = await createBenchDevices(provider, server.url, `peer-off-${tag}`, PAIRS);
    const offlineUsers = Array.from({ length: PAIRS }, (_, i) => `off${tag}${i}`);
    for (const u of offlineUsers) (await XmppClient.login(ejabberd.port, EJABBERD_DOMAIN, u, "pw", false)).close();
    const offlineSenders = await Promise.all(Array.from({ length: PAIRS }, (_, i) => XmppClient.login(ejabberd!.port, EJABBERD_DOMAIN, `os${tag}${i}`, "pw")));
    let stored = 0;
    const sealpostOffline = (ms: number) =>
      closedLoop({
        ms,
        op: async (i) => {
          await send(raw, spSenders[i % PAIRS], sendRequest(ids.make(ids.next++), SP_BODY, [offlineDevices[i % PAIRS]]));
          stored++;
        },
        count: () => stored,
        cpu: serverCpu,
      });
    // XMPP has no per-message acknowledgement: each sender sends its share of the 64 in flight,
    // then a ping; the server handles a stream in order, so the pong means all were routed to
    // offline storage.
    const xmppOffline = async (ms: number) => {
      const per = IN_FLIGHT / PAIRS;
      let routed = 0;
      let pings = 0;
      const cpu0 = cpuSeconds(ejabberd!.pid);
      const start = performance.now();
      const end = start + ms;
      await Promise.all(
        offlineSenders.map(async (c, s) => {
          while (performance.now() < end) {
            for (let i = 0; i < per; i++) c.message(`${offlineUsers[(s + i) % PAIRS]}@${EJABBERD_DOMAIN}`, `o${s}-${routed + i}`, BODY);
            await c.ping(`p${s}-${pings++}`, EJABBERD_DOMAIN);
            routed += per;
          }
        }),
      );
      const elapsed = performance.now() - start;
      const cpu = cpuSeconds(ejabberd!.pid) - cpu0;
      return { perSec: (routed * 1000) / elapsed, perCore: cpu > 0 ? routed / cpu : 0 };
    };
    await sealpostOffline(P.sampleMs / 3);
    await xmppOffline(P.sampleMs / 3);
    const so: { perSec: number; perCore: number }[] = [];
    const xo: { perSec: number; perCore: number }[] = [];
    for (let i = 0; i < P.samples; i++) {
      so.push(await sealpostOffline(P.sampleMs));
      xo.push(await xmppOffline(P.sampleMs));
    }
    for (const c of offlineSenders) c.close();
    const soRate = median(so.map((x) => x.perSec));
    const xoRate = median(xo.map((x) => x.perSec));
    log(
      `offline store: sealpost ${round(soRate)} msg/s (${round(median(so.map((x) => x.perCore)))} per server-side core-second), ejabberd ${round(xoRate)} msg/s (${round(median(xo.map((x) => x.perCore)))})`,
    );
    figures.push({
      name: "peer_offline_store",
      implementation: "sealpost-server (unary Send)",
      value: round(soRate),
      unit: "msg/s",
      samples: so.length,
      sampleValues: so.map((x) => round(x.perSec)),
      reference: ejRef(xoRate, "msg/s", xo.length),
      ratio: ratio(soRate, xoRate),
      target: { row: "offline_vs_peer", description: ">= ejabberd's, same run", met: soRate >= xoRate },
      params: {
        receivers_offline: PAIRS,
        in_flight: IN_FLIGHT,
        bytes: 1024,
        per_server_core: round(median(so.map((x) => x.perCore))),
        peer_per_core: round(median(xo.map((x) => x.perCore))),
      },
      note: "sealpost: Sends answered Stored (persisted and acknowledged by JetStream); ejabberd: messages to users that are not connected, counted when an in-order ping after them is answered (routed to offline storage)",
    });

    // Catch-up: devices with 10 pending each reconnect, 64 at a time.
    const cuDevices: BenchDevice[] = await createBenchDevices(provider, server.url, `peer-cu-${tag}`, P.catchupDevices);
    const cuUsers = Array.from({ length: P.catchupDevices }, (_, i) => `c${tag}${i}`);
    // Register them (logged in once, then offline).
    for (let i = 0; i < cuUsers.length; i += 64)
      (await Promise.all(cuUsers.slice(i, i + 64).map((u) => XmppClient.login(ejabberd!.port, EJABBERD_DOMAIN, u, "pw", false)))).forEach((c) => c.close());
    const filler = await XmppClient.login(ejabberd.port, EJABBERD_DOMAIN, `f${tag}`, "pw");
    const spRounds: number[] = [];
    const xmRounds: number[] = [];
    const rounds = Math.max(1, P.samples);
    const per = Math.floor(P.catchupDevices / rounds);
    for (let r = 0; r < rounds; r++) {
      const sl = cuDevices.slice(r * per, (r + 1) * per);
      const ul = cuUsers.slice(r * per, (r + 1) * per);
      const jobs = sl.flatMap((d) => Array.from({ length: PENDING }, () => d));
      let j = 0;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          for (let i = j++; i < jobs.length; i = j++) await send(raw, spSenders[0], sendRequest(ids.make(ids.next++), SP_BODY, [jobs[i]]));
        }),
      );
      for (const u of ul) for (let k = 0; k < PENDING; k++) filler.message(`${u}@${EJABBERD_DOMAIN}`, `o${k}`, BODY);
      await new Promise((res) => setTimeout(res, 1000)); // let ejabberd store them
      let n = 0;
      let t = performance.now();
      await Promise.all(
        Array.from({ length: CATCHUP_CONCURRENCY }, async () => {
          for (let i = n++; i < sl.length; i = n++) await catchUp(pool.next(), sl[i]);
        }),
      );
      spRounds.push((sl.length * 1000) / (performance.now() - t));
      n = 0;
      t = performance.now();
      await Promise.all(
        Array.from({ length: CATCHUP_CONCURRENCY }, async () => {
          for (let i = n++; i < ul.length; i = n++) {
            let got = 0;
            let done!: () => void;
            const all = new Promise<void>((res) => (done = res));
            const c = await XmppClient.login(ejabberd!.port, EJABBERD_DOMAIN, ul[i], "pw", false);
            c.onMessage = () => {
              if (++got === PENDING) done();
            };
            c.send("<presence/>");
            await Promise.race([all, new Promise((res) => setTimeout(res, 30_000))]);
            c.close();
          }
        }),
      );
      xmRounds.push((ul.length * 1000) / (performance.now() - t));
    }
    filler.close();
    const spCu = median(spRounds);
    const xmCu = median(xmRounds);
    log(`catch-up: sealpost ${round(spCu)} devices/s, ejabberd ${round(xmCu)} devices/s`);
    figures.push({
      name: "peer_catchup",
      implementation: "sealpost-server",
      value: round(spCu),
      unit: "devices/s",
      samples: spRounds.length,
      sampleValues: spRounds.map((x) => round(x)),
      reference: { ...ejRef(xmCu, "devices/s", xmRounds.length), sampleValues: xmRounds.map((x) => round(x)) },
      ratio: ratio(spCu, xmCu),
      target: { row: "catchup_vs_peer", description: ">= ejabberd's, same run", met: spCu >= xmCu },
      params: { pending_each: PENDING, concurrent_devices: CATCHUP_CONCURRENCY, devices: P.catchupDevices },
      note: "XMPP: connect, SASL PLAIN login, bind, presence, the 10 offline messages; sealpost: Receive with the device's token until Drained, one Ack",
    });
    pool.close();
    raw.close();
  } finally {
    await ejabberd?.stop();
    await server.stop();
    await nats.stop();
  }
  writeResult({
    benchmark: "peer",
    mode,
    date: new Date().toISOString(),
    durationSec: round((Date.now() - started) / 1000, 1),
    machine,
    versions: { ejabberd: version, "nats-server": natsServerVersion() ?? "unknown", "@connectrpc/connect-node": packageVersion("@connectrpc/connect-node") },
    method:
      "ejabberd on its own config and port (plain TCP, no shapers, in-band registration, mod_offline), started as an Erlang VM without distribution; sealpost server in its own process on its own nats-server; load from this process; samples interleaved",
    figures,
  });
}

await main();
