/**
 * CI smoke for `npm run bench`: runs every benchmark in --smoke mode (tiny counts, seconds)
 * into a temporary directory and checks the result files' shape: every figure has a value and
 * a unit and a sample count, the comparison figures have a reference measured in the same run,
 * and the generated BENCHMARKS.md has a row for every target in bench/src/targets.ts. No timing or ratio
 * is asserted: smoke figures are meaningless by design.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { normalizeResult } from "../src/normalize.js";
import type { BenchResult } from "../src/result.js";
import { TARGET_ROWS } from "../src/targets.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
let dir: string;
let exitCode: number | null;
let output = "";

/** Figures that are comparisons and must carry a reference (the rest are context). */
const NEEDS_REFERENCE: Record<string, RegExp> = {
  crypto: /^(session_setup|steady_1to1|ping_pong|fanout8_send|fanout8_roundtrip)$/,
  group: /^(group_encrypt|group_send_100|group_decrypt)$/,
  server: /^(send_routed|deliveries_at_saturation|latency_.*|reconnect_catchup|reconnect_catchup_spread|idle_streams_rss|scale_.*)$/,
  // The in-browser crypto figures (absent, with extra.skipped, when Chromium is not installed).
  web: /^(session_setup|steady_1to1)$/,
  // Key transparency: absolute figures (no reference implementation to compare with).
  transparency: /^$/,
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "sealpost-bench-smoke-"));
  exitCode = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/src/run-all.ts", "--smoke"], {
      cwd: root,
      env: { ...process.env, BENCH_RESULTS_DIR: dir, BENCH_DOC_PATH: join(dir, "BENCHMARKS.md") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.once("exit", (code) => resolve(code));
  });
}, 300_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const read = (name: string): BenchResult => JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as BenchResult;

describe("npm run bench -- --smoke", () => {
  it("exits 0", () => {
    expect(exitCode, output.slice(-4000)).toBe(0);
  });

  for (const name of Object.keys(NEEDS_REFERENCE)) {
    it(`writes bench results/${name}.json in the common shape, every figure with unit, samples and (for comparisons) a reference`, () => {
      const r = read(name);
      expect(normalizeResult(r as unknown as Record<string, unknown>)).toEqual(r);
      expect(r.benchmark).toBe(name);
      expect(r.mode).toBe("smoke");
      expect(r.machine.node).toBe(process.version);
      expect(r.machine.cores).toBeGreaterThan(0);
      expect(r.figures.length).toBeGreaterThan(0);
      for (const f of r.figures) {
        expect(typeof f.value, f.name).toBe("number");
        expect(Number.isFinite(f.value), f.name).toBe(true);
        expect(f.unit, f.name).toMatch(/\S/);
        expect(f.samples, f.name).toBeGreaterThan(0);
        if (NEEDS_REFERENCE[name].test(f.name)) {
          expect(f.reference, `${name}/${f.name} has a reference`).toBeDefined();
          expect(f.reference!.name).toMatch(/\S/);
          expect(typeof f.reference!.value).toBe("number");
        }
      }
    });
  }

  it("writes bench results/peer.json: ejabberd beside sealpost with references, or a skip that says why", () => {
    const r = read("peer");
    expect(r.benchmark).toBe("peer");
    if (r.method.startsWith("skipped")) {
      expect(r.figures).toEqual([]);
      return;
    }
    expect(r.figures.map((f) => f.name)).toEqual([
      "peer_online_routed",
      "peer_online_routed_per_core",
      "peer_online_routed_session",
      "peer_online_routed_session_per_core",
      "peer_offline_store",
      "peer_catchup",
    ]);
    for (const f of r.figures) {
      expect(f.reference?.name).toMatch(/^ejabberd /);
      expect(f.value).toBeGreaterThan(0);
      expect(f.reference!.value).toBeGreaterThan(0);
    }
  });

  it("covers every row of the target table (targets.ts), and BENCHMARKS.md lists each as met or missed", () => {
    const peerSkipped = read("peer").method.startsWith("skipped");
    const figures = [...Object.keys(NEEDS_REFERENCE), "peer"].flatMap((n) => read(n).figures);
    for (const row of TARGET_ROWS.filter((r) => !(r.peer && peerSkipped))) {
      const hits = figures.filter((f) => f.target?.row === row.id);
      expect(hits.length, `a figure answers the target row ${row.id}`).toBeGreaterThan(0);
      for (const f of hits) expect(typeof f.target!.met).toBe("boolean");
    }
    const doc = readFileSync(join(dir, "BENCHMARKS.md"), "utf8");
    for (const row of TARGET_ROWS) {
      const line = doc.split("\n").find((l) => l.startsWith(`| ${row.figure} |`));
      expect(line, row.figure).toBeDefined();
      expect(line).toMatch(row.peer && peerSkipped ? /\| \*\*not measured\*\* / : /\| (met|\*\*missed\*\*) /);
    }
  });
});
