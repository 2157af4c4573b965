/**
 * `--merge`: a run of some figures alone replaces exactly those figures of the last full run,
 * each marked with its own run, and BENCHMARKS.md says which figures came from where.
 */
import { describe, expect, it } from "vitest";
import { renderBenchmarksDoc } from "../src/benchmarks-doc.js";
import { normalizeResult } from "../src/normalize.js";
import { mergeResult, type BenchResult, type Figure } from "../src/result.js";

const machine = (cpu: string, load: number): BenchResult["machine"] => ({
  cpu,
  cores: 2,
  memoryGiB: 24,
  loadavg: { start: load, end: load + 0.5 },
  platform: "linux x64",
  node: "v20.20.2",
  natsServer: "2.9.10",
});

const fig = (name: string, value: number, implementation = "sealpost-server", extra: Partial<Figure> = {}): Figure => ({
  name,
  implementation,
  value,
  unit: "MB RSS",
  samples: 1,
  ...extra,
});

const full: BenchResult = {
  benchmark: "server",
  mode: "full",
  date: "2026-12-07T19:01:44.160Z",
  durationSec: 420,
  machine: machine("Intel(R) Xeon(R) Processor", 1.5),
  versions: { baseline: "1a925bb" },
  method: "the full run's method",
  figures: [
    fig("send_routed", 4936, "sealpost-server", { unit: "msg/s" }),
    fig("idle_streams_rss", 307, "sealpost-server", { target: { row: "idle_streams_rss", description: "RSS < 300 MB with 10k streams", met: false } }),
    fig("idle_stream_marginal_rss", 15.1),
    fig("idle_stream_marginal_rss", 13.5, "sealpost-server@baseline-1a925bb"),
  ],
  extra: { idle_streams: { rss_idle: 1 }, kept: true },
};

const idleOnly: BenchResult = {
  benchmark: "server",
  mode: "full",
  date: "2026-12-08T03:30:00.000Z",
  durationSec: 85,
  machine: machine("AMD EPYC", 0.7),
  versions: {},
  method: "idle only",
  figures: [
    fig("idle_streams_rss", 269, "sealpost-server", { target: { row: "idle_streams_rss", description: "RSS < 300 MB with 10k streams", met: true } }),
    fig("idle_stream_marginal_rss", 10.5),
  ],
  extra: { idle_streams: { rss_idle: 2 } },
};

describe("mergeResult", () => {
  const merged = mergeResult(full, idleOnly);

  it("replaces every figure of the names measured, for every implementation, and keeps the rest", () => {
    expect(merged.figures.map((f) => `${f.name}=${f.value}@${f.implementation}`)).toEqual([
      "send_routed=4936@sealpost-server",
      "idle_streams_rss=269@sealpost-server",
      "idle_stream_marginal_rss=10.5@sealpost-server",
    ]);
  });

  it("marks the merged figures with their own run and keeps the file's run for the rest", () => {
    expect(merged.figures[0].run).toBeUndefined();
    expect(merged.figures[1].run).toEqual({ date: idleOnly.date, mode: "full", cpu: "AMD EPYC", loadavg: { start: 0.7, end: 1.2 } });
    expect(merged.date).toBe(full.date);
    expect(merged.machine.cpu).toBe(full.machine.cpu);
    expect(merged.method).toBe(full.method);
    expect(merged.extra).toEqual({ idle_streams: { rss_idle: 2 }, kept: true });
  });

  it("keeps a figure's earlier run when merged again, and survives normalizeResult", () => {
    const again = mergeResult(merged, {
      ...idleOnly,
      date: "2026-12-09T00:00:00.000Z",
      figures: [fig("send_routed", 5000, "sealpost-server", { unit: "msg/s" })],
    });
    const back = normalizeResult(JSON.parse(JSON.stringify(again)) as Record<string, unknown>);
    expect(back.figures.find((f) => f.name === "idle_streams_rss")?.run?.date).toBe(idleOnly.date);
    expect(back.figures.find((f) => f.name === "send_routed")?.run?.date).toBe("2026-12-09T00:00:00.000Z");
  });

  it("refuses results of another benchmark", () => {
    expect(() => mergeResult(full, { ...idleOnly, benchmark: "peer" })).toThrow(/cannot merge peer results into server/);
  });

  it("says in BENCHMARKS.md which figures were measured apart, and when", () => {
    const doc = renderBenchmarksDoc([merged]);
    const row = doc.split("\n").find((l) => l.startsWith("| 10k idle receive streams"));
    expect(row).toContain("269 MB RSS");
    expect(row).toContain("| met (");
    expect(row).toContain("server (full, 2026-12-08, merged)");
    expect(doc).toContain(
      "Measured apart and merged into this table (a run of these figures alone, `--figures ... --merge`): idle_streams_rss, idle_stream_marginal_rss (full mode, 2026-12-08T03:30:00.000Z, AMD EPYC, load average 0.7 -> 1.2).",
    );
  });
});
