/**
 * What one message costs when messages come one at a time: a plain JetStream publisher (no
 * sealpost code at all) on a nats-server started here, open loop at several rates, rounds
 * interleaved. Per publish: nats-server's CPU and this process's CPU (from /proc and
 * process.cpuUsage), and the publish -> PubAck latency.
 *
 * Why: at 200-1,000 msg/s the sealpost server spends several times the CPU per message it
 * spends at saturation (bench/ANALYSIS.md, latency). If a publisher that does nothing but
 * publish shows the same inflation, and nats-server (Go, no JIT) with it, the cost is the
 * machine's per-wake-up cost (every message wakes each process alone), not sealpost's code.
 *
 *   npm run probe:low-rate [-- --rates 200,1000,5000 --seconds 6 --rounds 2]
 */
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { startTestNats } from "@sealpost/test-support";
import { cpuSeconds } from "./proc-cpu.js";
import { median, percentile } from "./result.js";
import { untilNextDue } from "./open-loop.js";

const { values } = parseArgs({
  options: {
    rates: { type: "string", default: "200,1000,5000" },
    seconds: { type: "string", default: "6" },
    rounds: { type: "string", default: "2" },
  },
});
const RATES = values.rates.split(",").map(Number);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);

const nats = await startTestNats({ forceOwn: true });
const nc = await connect({ servers: nats.url, noAsyncTraces: true });
try {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "LOWRATE", subjects: ["lowrate.>"] });
  const js = jetstream(nc);
  const body = new Uint8Array(1024).fill(7);

  /** Open loop at `rate` for SECONDS: publishes due by the clock go out each millisecond tick. */
  const run = async (rate: number) => {
    const nats0 = cpuSeconds(nats.pid);
    const own0 = process.cpuUsage();
    const total = Math.floor(rate * SECONDS);
    const latencies: number[] = [];
    const acks: Promise<unknown>[] = [];
    const t0 = performance.now();
    let issued = 0;
    while (issued < total) {
      const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
      for (; issued < due; issued++) {
        const intended = t0 + (issued * 1000) / rate;
        acks.push(js.publish(`lowrate.${issued % 8}`, body).then(() => latencies.push(performance.now() - intended)));
      }
      await untilNextDue(t0, issued, rate);
    }
    await Promise.all(acks);
    const own = process.cpuUsage(own0);
    latencies.sort((a, b) => a - b);
    return {
      natsUs: ((cpuSeconds(nats.pid) - nats0) * 1e6) / total,
      publisherUs: (own.user + own.system) / total,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
    };
  };

  const results = new Map<number, Awaited<ReturnType<typeof run>>[]>(RATES.map((r) => [r, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const rate of RATES) {
      const r = await run(rate);
      results.get(rate)!.push(r);
      console.log(
        `round ${round + 1}, ${rate} msg/s: nats-server ${r.natsUs.toFixed(0)} us, publisher ${r.publisherUs.toFixed(0)} us CPU per publish; p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms`,
      );
    }
  }
  console.log("\nmedians over the rounds (CPU per publish; the last column against the highest rate):");
  const top = RATES[RATES.length - 1];
  const med = (rate: number, k: "natsUs" | "publisherUs") => median(results.get(rate)!.map((r) => r[k]));
  for (const rate of RATES) {
    console.log(
      `${String(rate).padStart(6)} msg/s: nats-server ${med(rate, "natsUs").toFixed(0).padStart(5)} us (${(med(rate, "natsUs") / med(top, "natsUs")).toFixed(1)}x), ` +
        `publisher ${med(rate, "publisherUs").toFixed(0).padStart(5)} us (${(med(rate, "publisherUs") / med(top, "publisherUs")).toFixed(1)}x)`,
    );
  }
} finally {
  await nc.close();
  await nats.stop();
}
