/**
 * Top frames of a V8 .cpuprofile (node --cpu-prof): self time per function and per file, so
 * a profile can be read without a GUI.
 *
 *   npx tsx bench/src/profile-top.ts bench/results/profiles/current.cpuprofile [topN] [--last S]
 *
 * --last S keeps only the samples of the profile's last S seconds (the bench's last phase);
 * --window A,B only those between A and B seconds after the profile started.
 */
import * as fs from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

export function topFrames(file: string, n = 30, lastSeconds = Infinity, window?: [number, number]): string {
  const p = JSON.parse(fs.readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map<number, number>();
  const end = p.timeDeltas.reduce((a, b) => a + b, 0);
  let at = 0;
  p.samples.forEach((id, i) => {
    at += p.timeDeltas[i] ?? 0;
    const inWindow = window ? at >= window[0] * 1e6 && at <= window[1] * 1e6 : end - at <= lastSeconds * 1e6;
    if (inWindow) self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  for (const [id, t] of self) {
    const cf = byId.get(id)!.callFrame;
    const short = cf.url
      .replace(/^file:\/\//, "")
      .replace(/.*node_modules\//, "nm:")
      .replace(/.*\/work\/main\//, "");
    const key = `${cf.functionName || "(anonymous)"} ${short}:${cf.lineNumber + 1}`;
    fn.set(key, (fn.get(key) ?? 0) + t);
    const f = short.startsWith("nm:")
      ? short
          .split("/")
          .slice(0, short.startsWith("nm:@") ? 2 : 1)
          .join("/")
      : short || cf.functionName;
    files.set(f, (files.get(f) ?? 0) + t);
  }
  const fmt = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, t]) => `${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`)
      .join("\n");
  return `total ${(total / 1e6).toFixed(1)} s sampled\n\n-- self time by function --\n${fmt(fn)}\n\n-- self time by file/package --\n${fmt(files)}`;
}

if (process.argv[1]?.endsWith("profile-top.ts")) {
  const args = process.argv.slice(2);
  const option = (name: string) => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args.splice(i, 2)[1];
  };
  const last = option("--last");
  const window = option("--window")?.split(",").map(Number) as [number, number] | undefined;
  console.log(topFrames(args[0], Number(args[1] ?? 30), last ? Number(last) : Infinity, window));
}
