/**
 * BucketHistogram beside prom-client's Histogram: fed the same observations (values on and
 * between the bounds, above them all, zero; label values that need escaping), a registry
 * writes the same text and the same JSON for both, and prom-client's AggregatorRegistry
 * (how cluster workers' metrics are merged) sums two instances' series the same way.
 */
import { describe, expect, it } from "vitest";
import { AggregatorRegistry, Histogram, Registry } from "prom-client";
import { BucketHistogram } from "../src/observability/bucket-histogram.js";

const BOUNDS = [0.001, 0.01, 0.1, 1];
const LABELS = ["method", "code"];
const OBSERVATIONS: [number, string, string][] = [
  [0, "Send", "ok"],
  [0.001, "Send", "ok"],
  [0.0011, "Send", "ok"],
  [0.5, "Send", "ok"],
  [7, "Send", "ok"],
  [0.01, "Ack", "not_found"],
  [0.02, 'we"ird\\la\nbel', "ok"],
];

function both(observations = OBSERVATIONS): { ours: Registry; theirs: Registry } {
  const ours = new Registry();
  const h = new BucketHistogram("t_seconds", "A test histogram.", BOUNDS, LABELS, ours);
  const theirs = new Registry();
  const p = new Histogram({ name: "t_seconds", help: "A test histogram.", buckets: BOUNDS, labelNames: LABELS, registers: [theirs] });
  for (const [v, method, code] of observations) {
    h.observe(v, method, code);
    p.observe({ method, code }, v);
  }
  return { ours, theirs };
}

/** Lines in a stable order: series order may differ, the set of lines may not. */
const lines = (text: string) => text.split("\n").sort();

describe("BucketHistogram", () => {
  it("writes the text prom-client's Histogram writes for the same observations", async () => {
    const { ours, theirs } = both();
    const text = await ours.metrics();
    expect(lines(text)).toEqual(lines(await theirs.metrics()));
    expect(text).toContain('t_seconds_bucket{le="0.001",method="Send",code="ok"} 2');
    expect(text).toContain('t_seconds_bucket{le="+Inf",method="Send",code="ok"} 5');
    expect(text).toContain('t_seconds_count{method="we\\"ird\\\\la\\nbel",code="ok"} 1');
  });

  it("gives the same JSON, and prom-client's aggregator sums two instances alike", async () => {
    const a = both();
    const b = both(OBSERVATIONS.slice(2));
    const byName = (v: { metricName?: string; labels: object; value: number }[]) =>
      v.map((x) => `${x.metricName} ${JSON.stringify(Object.entries(x.labels).sort())} ${x.value}`).sort();
    const [ourJson] = await a.ours.getMetricsAsJSON();
    const [theirJson] = await a.theirs.getMetricsAsJSON();
    expect(byName(ourJson.values as never)).toEqual(byName(theirJson.values as never));
    const ours = AggregatorRegistry.aggregate([await a.ours.getMetricsAsJSON(), await b.ours.getMetricsAsJSON()]);
    const theirs = AggregatorRegistry.aggregate([await a.theirs.getMetricsAsJSON(), await b.theirs.getMetricsAsJSON()]);
    expect(lines(await ours.metrics())).toEqual(lines(await theirs.metrics()));
    expect(await ours.metrics()).toContain('t_seconds_count{method="Send",code="ok"} 8');
  });

  it("shows a histogram without labels from the start, as prom-client does", async () => {
    const ours = new Registry();
    new BucketHistogram("idle_seconds", "Nothing yet.", BOUNDS, [], ours);
    const theirs = new Registry();
    new Histogram({ name: "idle_seconds", help: "Nothing yet.", buckets: BOUNDS, registers: [theirs] });
    expect(lines(await ours.metrics())).toEqual(lines(await theirs.metrics()));
    expect(await ours.metrics()).toContain('idle_seconds_bucket{le="+Inf"} 0');
  });
});
