/**
 * `npm run bench`: runs every benchmark in bench/src, each in its own process (no JIT or GC
 * state carried from one to the next), normalizes bench/results/<name>.json to the common
 * shape (result.ts) and regenerates docs/BENCHMARKS.md.
 *
 *   npm run bench                  full mode (minutes)
 *   npm run bench -- --quick       short samples (about a minute per benchmark)
 *   npm run bench -- --smoke       tiny counts, seconds (CI smoke; figures meaningless)
 *   npm run bench -- --only server run one benchmark (repeatable: --only crypto --only group)
 *   npm run bench -- --doc         only regenerate docs/BENCHMARKS.md from the JSON files
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeBenchmarksDoc } from "./benchmarks-doc.js";
import { normalizeResult } from "./normalize.js";
import { benchMode, repoRoot, resultsDir } from "./result.js";

/** Benchmark name -> script (each writes bench/results/<name>.json). */
const BENCHMARKS: Record<string, string> = {
  crypto: "bench/src/crypto-bench.ts",
  group: "bench/src/group-bench.ts",
  server: "bench/src/server-bench.ts",
  // ejabberd beside sealpost; writes a "skipped" result when ejabberd is not installed.
  peer: "bench/src/peer-bench.ts",
  // Bundle sizes and in-browser crypto; the crypto part is skipped with a note without Chromium.
  web: "bench/src/web-bench.ts",
  // Key transparency: appends, replay, proof sizes and verification at 1M leaves.
  transparency: "bench/src/transparency-bench.ts",
};

function runScript(script: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { cwd: repoRoot(), stdio: "inherit" });
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

function normalizeFile(name: string): void {
  const file = path.join(resultsDir(), `${name}.json`);
  if (!fs.existsSync(file)) return;
  const raw = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  fs.writeFileSync(file, JSON.stringify(normalizeResult(raw), null, 2) + "\n");
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const mode = benchMode(argv);
  const only: string[] = [];
  argv.forEach((a, i) => {
    if (a === "--only") only.push(argv[i + 1]);
  });
  for (const o of only) if (!BENCHMARKS[o]) throw new Error(`unknown benchmark ${o}; known: ${Object.keys(BENCHMARKS).join(", ")}`);
  const passThrough = argv.filter(
    (a, i) => a !== "--only" && argv[i - 1] !== "--only" && a !== "--doc" && a !== "--quick" && a !== "--smoke" && a !== "--full",
  );
  // Benchmarks without a smoke mode of their own (group) run their quick mode then.
  const modeFlag = mode === "full" ? [] : mode === "smoke" ? ["--smoke", "--quick"] : ["--quick"];
  const failed: string[] = [];
  if (!argv.includes("--doc")) {
    for (const [name, script] of Object.entries(BENCHMARKS)) {
      if (only.length && !only.includes(name)) continue;
      const t0 = Date.now();
      console.log(`\n=== ${name} (${mode}) ===`);
      const code = await runScript(script, [...modeFlag, ...passThrough]);
      if (code !== 0) {
        failed.push(name);
        console.error(`${name}: exited with ${code}`);
        continue;
      }
      normalizeFile(name);
      console.log(`=== ${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s ===`);
    }
  }
  const doc = writeBenchmarksDoc();
  console.log(`\nwrote ${path.relative(process.cwd(), doc)}`);
  if (failed.length) {
    console.error(`failed: ${failed.join(", ")}`);
    process.exitCode = 1;
  }
}

await main();
