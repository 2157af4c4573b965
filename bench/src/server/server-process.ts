/**
 * Starts bench/src/server/server-child.ts as a child process and talks to it: its URL, its
 * memory (the child's own figures and /proc VmRSS), and a clean stop.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "../result.js";

export interface ServerMemory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  mallocedMemory: number;
  physicalHeap: number;
  /** V8's heap spaces (v8.getHeapSpaceStatistics()): where committed heap is not in use. */
  spaces: { name: string; size: number; used: number; physical: number }[];
}

export interface BenchServer {
  label: string;
  url: string;
  pid: number;
  /** Resident set size of the server process (bytes), from /proc. */
  rss(): number;
  /** The child's process.memoryUsage() after a GC (bytes). */
  stats(): Promise<ServerMemory>;
  /** Writes a V8 heap snapshot of the server to `file` (after a GC). */
  snapshot(file: string): Promise<string>;
  stop(): Promise<void>;
}

export interface BenchServerOptions {
  label: string;
  natsUrl: string;
  /** Another checkout's server/src (baseline of a before/after comparison). */
  serverSrc?: string;
  /** Extra node flags, e.g. ["--cpu-prof", "--cpu-prof-dir=..."]. */
  nodeFlags?: string[];
  /** Extra server-child arguments, e.g. ["--metrics", "off"]. */
  serverArgs?: string[];
}

/** The child built as `npm start` builds the server (server/build.mjs), once per server source. */
const built = new Map<string, string>();
function buildChild(serverSrc: string | undefined): string {
  const key = serverSrc ?? "";
  const done = built.get(key);
  if (done) return done;
  // Inside the checkout: the bundle imports npm packages from its node_modules.
  const out = path.join(repoRoot(), "bench", "tmp", `server-child-${process.pid}-${built.size}.mjs`);
  const args = [path.join(repoRoot(), "server/build.mjs"), "--entry", path.join(repoRoot(), "bench/src/server/server-child.ts"), "--out", out];
  if (serverSrc) args.push("--server-src", serverSrc);
  execFileSync(process.execPath, args, { cwd: repoRoot(), stdio: "inherit" });
  built.set(key, out);
  process.once("exit", () => {
    fs.rmSync(out, { force: true });
    fs.rmSync(`${out}.map`, { force: true });
  });
  return out;
}

export async function startBenchServer(o: BenchServerOptions): Promise<BenchServer> {
  // BENCH_SERVER_FLAGS: extra node flags for every server child (e.g. --heap-prof), for experiments.
  const envFlags = process.env.BENCH_SERVER_FLAGS?.split(" ").filter(Boolean) ?? [];
  const args = [...(o.nodeFlags ?? []), ...envFlags, "--expose-gc", "--enable-source-maps", buildChild(o.serverSrc), "--nats", o.natsUrl];
  args.push(...(o.serverArgs ?? []));
  const child: ChildProcess = spawn(process.execPath, args, { cwd: repoRoot(), stdio: ["ignore", "pipe", "inherit", "ipc"] });
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    let buf: string | undefined = "";
    const timer = setTimeout(() => reject(new Error(`${o.label}: server not listening after 60 s`)), 60_000);
    child.once("exit", (code) => reject(new Error(`${o.label}: server exited (${code}) before listening`)));
    child.stdout!.setEncoding("utf8");
    // BENCH_SERVER_STDOUT: a file that gets the servers' stdout (e.g. with BENCH_SERVER_FLAGS=--trace-gc).
    const tee = process.env.BENCH_SERVER_STDOUT;
    child.stdout!.on("data", (d: string) => {
      if (tee) fs.appendFileSync(tee, d);
      if (buf === undefined) return;
      buf += d;
      const m = /\{"url":"([^"]+)"\}/.exec(buf);
      if (m) {
        clearTimeout(timer);
        buf = undefined;
        resolve(m[1]);
      }
    });
  });
  const pid = child.pid!;
  return {
    label: o.label,
    url,
    pid,
    rss() {
      const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
      const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? 0);
      return kb * 1024;
    },
    stats() {
      return new Promise((resolve) => {
        child.once("message", (m) => resolve(m as ServerMemory));
        child.send("stats");
      });
    },
    snapshot(file) {
      return new Promise((resolve) => {
        child.once("message", (m) => resolve((m as { path: string }).path));
        child.send(`snapshot:${file}`);
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
      process.off("exit", killOnExit);
    },
  };
}
