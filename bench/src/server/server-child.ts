/**
 * A sealpost server instance in its own process for the server benchmark, so its RSS and CPU
 * are its own. Limits meant for abuse (per-device send and challenge rates) are raised: the
 * load generator sends from a few devices as fast as the server allows.
 *
 * Built into one module like `npm start`'s server (server/build.mjs; server-process.ts
 * builds it, against another checkout's server/src for a baseline) and run by plain node:
 *
 *   node <built child> --nats nats://127.0.0.1:4222 [--metrics off]
 *
 * Prints one JSON line {"url": ...} on stdout when listening; answers IPC "stats" with its
 * memory figures; exits on SIGTERM or when the parent goes away.
 */
import { writeFileSync } from "node:fs";
import { defaultConfig } from "../../../server/src/config.js";
import { silentLogger } from "../../../server/src/logger.js";
import { startServer } from "../../../server/src/server.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const natsUrl = arg("--nats");
if (!natsUrl) throw new Error("--nats <url> is required");

const server = await startServer(
  defaultConfig({
    natsUrl,
    port: 0,
    host: "127.0.0.1",
    shutdownGraceSeconds: 1,
    tokenSecret: "bench-secret-bench-secret-bench-secret!!",
    ...(arg("--metrics") ? { metrics: arg("--metrics") } : {}),
  }),
  {
    log: silentLogger,
    delivery: { limits: { sendsPerMinute: 1e9, sealedSendsPerAccountPerMinute: 1e9, sealedSendsPerAddressPerMinute: 1e9 } },
    directory: {
      limits: { challengesPerMinute: 1e6, uploadsPerMinute: 1e6, claimsPerMinute: 1e6, accountsPerAddressPerHour: 1e9, oneTimePrekeysPerDevicePerMinute: 1e9 },
    },
  },
);
process.stdout.write(JSON.stringify({ url: server.url }) + "\n");

// BENCH_ALLOCATIONS=<file>: a sampling allocation profile (every allocation, also those GC'd
// since), written to <file>.heapprofile on exit: where the garbage comes from.
const allocations = process.env.BENCH_ALLOCATIONS;
const inspector = allocations ? new (await import("node:inspector")).Session() : undefined;
if (inspector) {
  inspector.connect();
  inspector.post("HeapProfiler.startSampling", { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
}
const writeAllocations = () =>
  new Promise<void>((resolve) => {
    if (!inspector) return resolve();
    inspector.post("HeapProfiler.stopSampling", (err, r) => {
      if (!err) writeFileSync(`${allocations}.heapprofile`, JSON.stringify((r as { profile: unknown }).profile));
      resolve();
    });
  });

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await writeAllocations();
  await server.close().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("disconnect", () => void stop());
process.on("message", async (m: unknown) => {
  if (typeof m === "string" && m.startsWith("snapshot:")) {
    const { writeHeapSnapshot } = await import("node:v8");
    globalThis.gc?.();
    process.send?.({ path: writeHeapSnapshot(m.slice("snapshot:".length)) });
  }
  if (m === "stats") {
    globalThis.gc?.();
    const mem = process.memoryUsage();
    const { getHeapStatistics } = await import("node:v8");
    const h = getHeapStatistics();
    process.send?.({
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      heapTotal: mem.heapTotal,
      external: mem.external,
      arrayBuffers: mem.arrayBuffers,
      mallocedMemory: h.malloced_memory,
      physicalHeap: h.total_physical_size,
      spaces: (await import("node:v8"))
        .getHeapSpaceStatistics()
        .map((sp) => ({ name: sp.space_name, size: sp.space_size, used: sp.space_used_size, physical: sp.physical_space_size })),
    });
  }
});
