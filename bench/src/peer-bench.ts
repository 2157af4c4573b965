/**
 * sealpost beside ejabberd (Debian's XMPP server, what many of our users would run instead),
 * same box, same run, samples interleaved, 1 KiB messages:
 *
 *   peer_online_routed   msg/s from 8 senders to 8 online receivers, closed loop (64 in flight
 *                        per implementation), and per server-side CPU second (sealpost:
 *                        server + nats-server; ejabberd: its VM)
 *   peer_catchup         devices/s that reconnect and take their 10 pending messages (64 at
 *                        a time; XMPP: connect, log in, bind, presence, 10 offline messages;
 *                        sealpost: Receive with the device's token, until Drained, one Ack)
 *
 *   npx tsx bench/src/peer-bench.ts [--smoke|--quick]
 *
 * Skipped, with a note in bench/results/peer.json, when ejabberd is not installed
 * (apt-get install -y ejabberd; it runs on its own config and port, see peer/ejabberd.ts).
 */
import { randomBytes } from "node:crypto";
import { createNodeProvider } from "@sealpost/client/crypto/node-provider.js";
import { startTestNats } from "@sealpost/test-support/index.js";
import { cpuSeconds } from "./proc-cpu.js";
import { benchMode, machineInfo, median, natsServerVersion, packageVersion, ratio, round, writeResult, type Figure } from "./result.js";
import { createBenchDevices, type BenchDevice } from "./server/bench-accounts.js";
import { catchUp, deliveryPool, MessageIds, Receivers, send, sendRequest } from "./server/delivery-load.js";
import { startBenchServer } from "./server/server-process.js";
import { EJABBERD_DOMAIN, ejabberdVersion, startEjabberd, type Ejabberd } from "./peer/ejabberd.js";
import { XmppClient } from "./peer/xmpp-client.js";

const mode = benchMode();
const P = {
  smoke: { samples: 1, sampleMs: 300, catchupDevices: 20 },
  quick: { samples: 3, sampleMs: 1000, catchupDevices: 200 },
  full: { samples: 5, sampleMs: 2500, catchupDevices: 500 },
}[mode];
const PAIRS = 8;
const IN_FLIGHT = 64;
const PENDING = 10;
const CATCHUP_CONCURRENCY = 64;
const BODY = randomBytes(768).toString("base64"); // 1 KiB of text, as an XMPP body must be
const log = (m: string) => console.log(`[peer-bench] ${m}`);

/** Closed loop over XMPP: `IN_FLIGHT` messages outstanding across the senders, for `ms`. */
async function xmppRate(senders: XmppClient[], receivers: XmppClient[], users: string[], pid: number, ms: number): Promise<{ perSec: number; perCore: number }> {
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
  const version = ejabberdVersion();
  if (!version) {
    log("ejabberd is not installed: skipped (apt-get install -y ejabberd)");
    writeResult({ benchmark: "peer", mode, date: new Date().toISOString(), durationSec: 0, machine: machineInfo(), versions: {}, method: "skipped: ejabberd is not installed on this machine", figures: [] });
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
    const pool = deliveryPool(server.url, 8);
    const ids = new MessageIds();
    const receivers = new Receivers(pool, ids);
    await receivers.open(spReceivers);
    const users = Array.from({ length: PAIRS }, (_, i) => `r${tag}${i}`);
    const xSenders = await Promise.all(Array.from({ length: PAIRS }, (_, i) => XmppClient.login(ejabberd!.port, EJABBERD_DOMAIN, `s${tag}${i}`, "pw")));
    const xReceivers = await Promise.all(users.map((u) => XmppClient.login(ejabberd!.port, EJABBERD_DOMAIN, u, "pw")));
    const sealpostRate = async (ms: number) => {
      const body = new Uint8Array(1024).fill(9);
      const a0 = receivers.arrivals;
      let expected = 0;
      let k = 0;
      const cpu0 = cpuSeconds(server.pid) + cpuSeconds(nats.pid);
      const start = performance.now();
      const end = start + ms;
      await Promise.all(
        Array.from({ length: IN_FLIGHT }, async () => {
          while (performance.now() < end) {
            const i = k++;
            expected++;
            await send(pool.next(), spSenders[i % PAIRS], sendRequest(ids.make(ids.next++), body, [spReceivers[i % PAIRS]]));
          }
        }),
      );
      const elapsed = performance.now() - start;
      const got = receivers.arrivals - a0;
      await receivers.waitFor(a0 + expected, 30_000);
      const cpu = cpuSeconds(server.pid) + cpuSeconds(nats.pid) - cpu0;
      return { perSec: (got * 1000) / elapsed, perCore: cpu > 0 ? (receivers.arrivals - a0) / cpu : 0 };
    };
    await sealpostRate(P.sampleMs / 3);
    await xmppRate(xSenders, xReceivers, users, ejabberd.pid, P.sampleMs / 3);
    const sp: { perSec: number; perCore: number }[] = [];
    const xm: { perSec: number; perCore: number }[] = [];
    for (let s = 0; s < P.samples; s++) {
      sp.push(await sealpostRate(P.sampleMs));
      xm.push(await xmppRate(xSenders, xReceivers, users, ejabberd.pid, P.sampleMs));
    }
    const spRate = median(sp.map((x) => x.perSec));
    const xmRate = median(xm.map((x) => x.perSec));
    const spCore = median(sp.map((x) => x.perCore));
    const xmCore = median(xm.map((x) => x.perCore));
    log(`online routed: sealpost ${round(spRate)} msg/s (${round(spCore)} per server-side core-second), ejabberd ${round(xmRate)} msg/s (${round(xmCore)})`);
    const ejRef = (value: number, unit: string, n: number) => ({ name: `ejabberd ${ejabberd!.version}, same box, samples interleaved`, value: round(value), unit, samples: n });
    figures.push({ name: "peer_online_routed", implementation: "sealpost-server (unary Send)", value: round(spRate), unit: "msg/s", samples: sp.length, sampleValues: sp.map((x) => round(x.perSec)), reference: ejRef(xmRate, "msg/s", xm.length), ratio: ratio(spRate, xmRate), params: { senders: PAIRS, receivers: PAIRS, in_flight: IN_FLIGHT, bytes: 1024 } });
    figures.push({
      name: "peer_online_routed_per_core",
      implementation: "sealpost-server (unary Send)",
      value: round(spCore),
      unit: "msg per server-side CPU second",
      samples: sp.length,
      reference: ejRef(xmCore, "msg per CPU second of the ejabberd VM", xm.length),
      ratio: ratio(spCore, xmCore),
      target: { row: "per_core_vs_peer", description: ">= ejabberd's, same run", met: spCore >= xmCore },
      note: "sealpost: server + nats-server CPU; ejabberd: its Erlang VM; the load generator excluded on both",
    });
    await receivers.close();
    for (const c of [...xSenders, ...xReceivers]) c.close();

    // Catch-up: devices with 10 pending each reconnect, 64 at a time.
    const cuDevices: BenchDevice[] = await createBenchDevices(provider, server.url, `peer-cu-${tag}`, P.catchupDevices);
    const cuUsers = Array.from({ length: P.catchupDevices }, (_, i) => `c${tag}${i}`);
    // Register them (logged in once, then offline).
    for (let i = 0; i < cuUsers.length; i += 64) (await Promise.all(cuUsers.slice(i, i + 64).map((u) => XmppClient.login(ejabberd!.port, EJABBERD_DOMAIN, u, "pw", false)))).forEach((c) => c.close());
    const filler = await XmppClient.login(ejabberd.port, EJABBERD_DOMAIN, `f${tag}`, "pw");
    const spRounds: number[] = [];
    const xmRounds: number[] = [];
    const rounds = Math.max(1, Math.min(P.samples, 3));
    const per = Math.floor(P.catchupDevices / rounds);
    for (let r = 0; r < rounds; r++) {
      const sl = cuDevices.slice(r * per, (r + 1) * per);
      const ul = cuUsers.slice(r * per, (r + 1) * per);
      const body = new Uint8Array(1024).fill(9);
      const jobs = sl.flatMap((d) => Array.from({ length: PENDING }, () => d));
      let j = 0;
      await Promise.all(Array.from({ length: 64 }, async () => { for (let i = j++; i < jobs.length; i = j++) await send(pool.next(), spSenders[0], sendRequest(ids.make(ids.next++), body, [jobs[i]])); }));
      for (const u of ul) for (let k = 0; k < PENDING; k++) filler.message(`${u}@${EJABBERD_DOMAIN}`, `o${k}`, BODY);
      await new Promise((res) => setTimeout(res, 1000)); // let ejabberd store them
      let n = 0;
      let t = performance.now();
      await Promise.all(Array.from({ length: CATCHUP_CONCURRENCY }, async () => { for (let i = n++; i < sl.length; i = n++) await catchUp(pool.next(), sl[i]); }));
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
      reference: ejRef(xmCu, "devices/s", xmRounds.length),
      ratio: ratio(spCu, xmCu),
      target: { row: "catchup_vs_peer", description: ">= ejabberd's, same run", met: spCu >= xmCu },
      params: { pending_each: PENDING, concurrent_devices: CATCHUP_CONCURRENCY, devices: P.catchupDevices },
      note: "XMPP: connect, SASL PLAIN login, bind, presence, the 10 offline messages; sealpost: Receive with the device's token until Drained, one Ack",
    });
    pool.close();
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
    machine: machineInfo(true),
    versions: { ejabberd: version, "nats-server": natsServerVersion() ?? "unknown", "@connectrpc/connect-node": packageVersion("@connectrpc/connect-node") },
    method: "ejabberd on its own config and port (plain TCP, no shapers, in-band registration, mod_offline), started as an Erlang VM without distribution; sealpost server in its own process on its own nats-server; load from this process; samples interleaved",
    figures,
  });
}

await main();
