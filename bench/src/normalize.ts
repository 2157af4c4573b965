/**
 * Brings a result file into the common shape of result.ts. The crypto and group benchmarks
 * predate it and write `samples` as an array, `reference.implementation`, and a separate
 * `targets` list; this maps them (idempotent: a file already in the common shape is unchanged).
 */
import * as os from "node:os";
import type { BenchMode, BenchResult, Figure, LoadAverage } from "./result.js";

interface LegacyFigure {
  name: string;
  implementation?: string;
  value: number;
  unit: string;
  samples?: number | number[];
  sampleValues?: number[];
  reference?: { implementation?: string; name?: string; value: number; samples?: number | number[]; sampleValues?: number[]; unit?: string };
  ratio?: number;
  target?: Figure["target"];
  params?: Figure["params"];
  note?: string;
  run?: Figure["run"];
  [k: string]: unknown;
}

interface LegacyTarget {
  figure: string;
  provider: string;
  minRatio: number;
  ratio: number;
  met: boolean;
}

const COMMON_KEYS = new Set(["benchmark", "mode", "date", "durationSec", "machine", "versions", "method", "figures", "extra", "targets"]);

export function normalizeResult(raw: Record<string, unknown>): BenchResult {
  const figures = ((raw.figures as LegacyFigure[]) ?? []).map(normalizeFigure);
  for (const t of (raw.targets as LegacyTarget[] | undefined) ?? []) {
    const f = figures.find((x) => x.name === t.figure && x.implementation === `sealpost/${t.provider}`);
    if (f && !f.target) {
      f.target = { row: t.figure, description: `>= ${t.minRatio}x libsignal-client (${t.provider} provider)`, met: t.met };
    }
  }
  const extra: Record<string, unknown> = { ...((raw.extra as Record<string, unknown>) ?? {}) };
  for (const [k, v] of Object.entries(raw)) if (!COMMON_KEYS.has(k)) extra[k] = v;
  const m = (raw.machine ?? {}) as Record<string, unknown>;
  return {
    benchmark: String(raw.benchmark),
    mode: (raw.mode as BenchMode) ?? "full",
    date: String(raw.date ?? new Date().toISOString()),
    durationSec: Number(raw.durationSec ?? 0),
    machine: {
      cpu: String(m.cpu ?? os.cpus()[0]?.model ?? "unknown"),
      cores: Number(m.cores ?? os.cpus().length),
      memoryGiB: Number(m.memoryGiB ?? Math.round(os.totalmem() / 2 ** 30)),
      ...(m.loadavg ? { loadavg: m.loadavg as LoadAverage } : {}),
      platform: String(m.platform ?? `${os.platform()} ${os.arch()}`),
      node: String(m.node ?? process.version),
      ...(m.natsServer ? { natsServer: String(m.natsServer) } : {}),
    },
    versions: (raw.versions as Record<string, string>) ?? {},
    method: String(raw.method ?? ""),
    figures,
    ...(Object.keys(extra).length ? { extra } : {}),
  };
}

function normalizeFigure(f: LegacyFigure): Figure {
  const { name, implementation, value, unit, samples, sampleValues, reference, ratio, target, params, note, run, ...rest } = f;
  const out: Figure = {
    name,
    implementation: implementation ?? "sealpost",
    value,
    unit,
    samples: Array.isArray(samples) ? samples.length : (samples ?? 1),
  };
  const values = Array.isArray(samples) ? samples : sampleValues;
  if (values) out.sampleValues = values;
  if (reference) {
    const rs = reference.samples;
    out.reference = {
      name: reference.name ?? reference.implementation ?? "reference",
      value: reference.value,
      ...(reference.unit ? { unit: reference.unit } : {}),
      samples: Array.isArray(rs) ? rs.length : (rs ?? 1),
      ...(Array.isArray(rs) ? { sampleValues: rs } : reference.sampleValues ? { sampleValues: reference.sampleValues } : {}),
    };
  }
  if (ratio !== undefined) out.ratio = ratio;
  if (target) out.target = target;
  const p = { ...(params ?? {}) };
  for (const [k, v] of Object.entries(rest)) if (typeof v === "number" || typeof v === "string") p[k] = v;
  if (Object.keys(p).length) out.params = p;
  if (note) out.note = note;
  if (run) out.run = run;
  return out;
}
