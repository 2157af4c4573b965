/**
 * The common shape of every benchmark result file (bench/results/<name>.json) and the helpers
 * each benchmark uses to write it: machine info, versions, mode, and each figure with its
 * unit, sample count and the reference measured in the same run.
 *
 * A figure that maps to a row of the target table (bench/src/targets.ts) carries `target.row` (one of
 * TARGET_ROWS in targets.ts) so docs/BENCHMARKS.md can list every target as met or missed.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { normalizeResult } from "./normalize.js";

export type BenchMode = "smoke" | "quick" | "full";

export interface Reference {
  /** What the reference is, e.g. "libsignal-client" or "raw JetStream async publish". */
  name: string;
  value: number;
  unit?: string;
  /** Number of samples (or observations) behind `value`. */
  samples?: number;
  sampleValues?: number[];
}

export interface Figure {
  /** Stable id, e.g. "session_setup" or "send_routed". */
  name: string;
  /** Who was measured, e.g. "sealpost/node" or "sealpost-server". */
  implementation: string;
  value: number;
  unit: string;
  /** Number of timed samples (throughput figures) or observations (latency percentiles). */
  samples: number;
  /** The individual samples when there are few (throughput medians). */
  sampleValues?: number[];
  /** Measured in the same run, side by side. */
  reference?: Reference;
  /** value / reference.value, rounded to 2 decimals. */
  ratio?: number;
  target?: { row: string; description: string; met: boolean };
  /** Parameters of this point (devices, bytes, offered load ...). */
  params?: Record<string, number | string>;
  note?: string;
  /**
   * Set when the figure comes from a later run of some figures alone, merged into the file
   * (`--merge`), not from the run the file's date and machine describe.
   */
  run?: MergedRun;
}

/** When, how and where a merged figure was measured. */
export interface MergedRun {
  date: string;
  mode: BenchMode;
  cpu: string;
  loadavg?: LoadAverage;
}

export interface LoadAverage {
  start: number;
  end?: number;
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  /** 1-minute load average at start and end of the run (the machine is shared; absent in files that predate it). */
  loadavg?: LoadAverage;
  platform: string;
  node: string;
  natsServer?: string;
}

export interface BenchResult {
  benchmark: string;
  mode: BenchMode;
  date: string;
  durationSec: number;
  machine: Machine;
  versions: Record<string, string>;
  method: string;
  figures: Figure[];
  /** Anything else worth keeping (sizes, profiles, notes). */
  extra?: Record<string, unknown>;
}

export function repoRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
}

/** bench/results, or BENCH_RESULTS_DIR (the CI smoke test writes elsewhere). */
export const resultsDir = () => process.env.BENCH_RESULTS_DIR ?? path.join(repoRoot(), "bench", "results");

/** --smoke (CI: tiny counts, seconds), --quick, or full (the default). */
export function benchMode(argv: string[] = process.argv): BenchMode {
  if (argv.includes("--smoke")) return "smoke";
  if (argv.includes("--quick")) return "quick";
  return "full";
}

/** Sample counts and durations for throughput figures per mode. */
export function sampling(mode: BenchMode): { samples: number; sampleMs: number; warmupMs: number } {
  switch (mode) {
    case "smoke":
      return { samples: 1, sampleMs: 40, warmupMs: 20 };
    case "quick":
      return { samples: 3, sampleMs: 250, warmupMs: 150 };
    case "full":
      return { samples: 7, sampleMs: 600, warmupMs: 400 };
  }
}

export function natsServerVersion(): string | undefined {
  try {
    return /v?(\d+\.\d+\.\d+)/.exec(execFileSync("nats-server", ["--version"], { encoding: "utf8" }))?.[1];
  } catch {
    return undefined;
  }
}

/** The machine's 1-minute load average now, to 2 decimals. */
export function loadAverageNow(): number {
  return round(os.loadavg()[0], 2);
}

export function machineInfo(withNats = false): Machine & { loadavg: LoadAverage } {
  return {
    cpu: os.cpus()[0]?.model ?? "unknown",
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadavg: { start: loadAverageNow() },
    platform: `${os.platform()} ${os.arch()}`,
    node: process.version,
    ...(withNats ? { natsServer: natsServerVersion() } : {}),
  };
}

export function packageVersion(name: string): string {
  return JSON.parse(fs.readFileSync(path.join(repoRoot(), "node_modules", name, "package.json"), "utf8")).version as string;
}

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function ratio(value: number, reference: number): number {
  return reference > 0 ? round(value / reference, 2) : 0;
}

/** Median of samples (the value reported for throughput figures). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : 0;
}

/** Nearest-rank percentile of already sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Writes bench/results/<benchmark>.json and returns its path. */
export function writeResult(result: BenchResult): string {
  if (result.machine.loadavg) result.machine.loadavg.end ??= loadAverageNow();
  const out = path.join(resultsDir(), `${result.benchmark}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
  return out;
}

/**
 * `next` (a run of some figures alone) merged into `prev` (the file's full run): every figure
 * of `prev` whose name `next` measured is replaced, for every implementation (a baseline
 * measured beside the old figure goes with it), and the new figures carry their own run.
 * The file's date, machine and method stay those of `prev`'s run; `extra` is merged by key.
 */
export function mergeResult(prev: BenchResult, next: BenchResult): BenchResult {
  if (prev.benchmark !== next.benchmark) throw new Error(`cannot merge ${next.benchmark} results into ${prev.benchmark}`);
  const measured = new Set(next.figures.map((f) => f.name));
  const run: MergedRun = { date: next.date, mode: next.mode, cpu: next.machine.cpu, loadavg: next.machine.loadavg };
  return {
    ...prev,
    figures: [...prev.figures.filter((f) => !measured.has(f.name)), ...next.figures.map((f) => ({ ...f, run: f.run ?? run }))],
    ...(prev.extra || next.extra ? { extra: { ...prev.extra, ...next.extra } } : {}),
  };
}

/** bench/results/<benchmark>.json in the common shape. */
export function readResult(benchmark: string): BenchResult {
  const file = path.join(resultsDir(), `${benchmark}.json`);
  if (!fs.existsSync(file)) throw new Error(`${file} does not exist: run the full benchmark before merging figures into it`);
  return normalizeResult(JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>);
}

export function readResults(dir = resultsDir()): BenchResult[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as BenchResult);
}
