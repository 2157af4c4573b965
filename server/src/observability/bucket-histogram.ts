/**
 * A histogram for the per-message paths, exposed through a prom-client Registry exactly as a
 * prom-client Histogram with the same name, buckets and labels would be (the registry writes
 * the text; server/test/bucket-histogram.test.ts compares the two line by line). prom-client's
 * observe builds a key from the label object on every call (~0.4-0.7 us each, ~2 us for an
 * RPC's counter and histogram together), and a catch-up observes a dozen times per device;
 * here a series is a few numbers found by one Map lookup of the label values.
 */
import type { Registry } from "prom-client";

interface Series {
  labels: Record<string, string>;
  /** Observations per bucket, not cumulative (the last slot is above every bound). */
  counts: Float64Array;
  sum: number;
  count: number;
}

/** A value as prom-client's metric `get()` hands it to a registry. */
interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

const KEY_SEPARATOR = "\u0000";

export class BucketHistogram {
  readonly type = "histogram";
  /** How prom-client's AggregatorRegistry merges the series of cluster workers. */
  readonly aggregator = "sum";
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    private readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
    // As prom-client does: a histogram without labels shows its (zero) series from the start.
    if (labelNames.length === 0) this.seriesOf([]);
  }

  /** Records `value` under the label values, in the order of the label names. */
  observe(value: number, ...labelValues: string[]): void {
    const s = this.seriesOf(labelValues);
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]) i++;
    s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  private seriesOf(labelValues: string[]): Series {
    const key = labelValues.length === 1 ? labelValues[0] : labelValues.join(KEY_SEPARATOR);
    let s = this.series.get(key);
    if (!s) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => (labels[n] = labelValues[i]));
      s = { labels, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    return s;
  }

  /** Observations so far per label values (for a counter of the same calls). */
  counts(): { labels: Record<string, string>; count: number }[] {
    return [...this.series.values()].map((s) => ({ labels: s.labels, count: s.count }));
  }

  /** What prom-client's Histogram.get() returns: cumulative buckets, +Inf, sum and count per series. */
  async get(): Promise<{ name: string; help: string; type: string; values: MetricValue[]; aggregator: string }> {
    const values: MetricValue[] = [];
    for (const s of this.series.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += s.counts[i];
        values.push({ labels: { le, ...s.labels }, value: acc, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: "+Inf", ...s.labels }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
