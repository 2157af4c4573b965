/**
 * Metrics and traces of a real server over the network: /metrics scraped before and after a
 * real exchange (Sends over connect-node and the native path, a Receive stream, Acks, a bad
 * Send, a rate-limited one) moves each counter by exactly what happened; no label or value
 * anywhere in the scrape carries an account id, a device id or a token; `--metrics
 * host:port` serves it on an admin listener only; and with tracing on, a Send that carries a
 * W3C traceparent is one trace from the client's span to the recipient's stream. The client
 * SDK continues an app's trace on its calls and counts its sends, retries and receive lag.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { parse as parseYaml } from "yaml";
import { create } from "@bufbuild/protobuf";
import { SendEntrySchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { createTestAccount, deliveryClient, startTestNats, startTestServer, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { Inbox, deliveryOf } from "./delivery-helpers.js";
import { trace } from "@opentelemetry/api";
import { Messenger, createMemoryMessengerStores } from "@sealpost/client";

let nats: TestNats;
let server: RunningServer;
let alice: TestAccount;
let bob: TestAccount;

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url, {}, { delivery: { limits: { sendsPerMinute: 1e6 } } });
  [alice, bob] = await Promise.all([createTestAccount(server.url, "obs-alice-7c1"), createTestAccount(server.url, "obs-bob-93e")]);
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
});

/** Prometheus text: "name{labels}" -> value (histograms by their _count/_sum lines). */
async function scrape(url = `${server.url}/metrics`): Promise<{ text: string; value(series: string): number }> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    values.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return { text, value: (s) => values.get(s) ?? 0 };
}

function sendTo(device: TestAccount["devices"][0], n: number) {
  return Array.from({ length: n }, (_, i) => ({
    messageId: randomBytes(16),
    sharedBody: Buffer.from(`body ${i}`),
    entries: [create(SendEntrySchema, { device: create(DeviceAddressSchema, device.address), entry: Buffer.from(`entry ${i}`) })],
  }));
}

describe("/metrics", () => {
  it("counts what a real exchange did, by method, protocol and code", async () => {
    const bobDelivery = deliveryOf(bob.devices[0], server.url);
    const inbox = new Inbox(bobDelivery);
    await inbox.waitDrained();
    const before = await scrape();
    // 3 Sends through connect-node (a deadline header sends them there), 2 on the native path.
    const viaConnect = deliveryClient(alice.devices[0], server.url);
    for (const req of sendTo(bob.devices[0], 3)) await viaConnect.send(req, { timeoutMs: 30_000 });
    for (const req of sendTo(bob.devices[0], 2)) await viaConnect.send(req);
    const bad = await viaConnect.send({ ...sendTo(bob.devices[0], 1)[0], messageId: new Uint8Array(3) }).catch((e: Error) => e);
    expect(bad).toBeInstanceOf(Error);
    const got = await inbox.waitForMessages(5);
    await bobDelivery.ack({ sequences: got.map((m) => m.sequence) });
    const after = await scrape();
    const d = (s: string) => after.value(s) - before.value(s);

    expect(d('sealpost_rpc_requests_total{method="Send",protocol="connect",code="ok"}')).toBe(5);
    expect(d('sealpost_rpc_requests_total{method="Send",protocol="connect",code="invalid_argument"}')).toBe(1);
    expect(d('sealpost_rpc_duration_seconds_count{method="Send",protocol="connect",code="ok"}')).toBe(5);
    expect(d('sealpost_rpc_duration_seconds_count{method="Send",protocol="connect",code="invalid_argument"}')).toBe(1);
    expect(d("sealpost_mailbox_appends_total")).toBe(5);
    expect(d("sealpost_send_fanout_devices_count")).toBe(5);
    expect(d("sealpost_send_fanout_devices_sum")).toBe(5);
    // Every message went out on bob's stream once: pushed from memory or read.
    expect(d("sealpost_live_pushes_total") + d("sealpost_mailbox_reads_total")).toBe(5);
    expect(d("sealpost_acked_messages_total")).toBe(5);
    // Pushed ones (and any fetched by hint) were live; catch-up reads are not counted.
    expect(d("sealpost_live_delivery_lag_seconds_count")).toBeGreaterThanOrEqual(d("sealpost_live_pushes_total"));
    expect(d("sealpost_live_delivery_lag_seconds_count")).toBeLessThanOrEqual(5);
    expect(d("sealpost_live_pushes_total")).toBeGreaterThanOrEqual(1);
    expect(d('sealpost_rpc_requests_total{method="Ack",protocol="connect",code="ok"}')).toBeGreaterThanOrEqual(1);
    expect(after.value("sealpost_open_mailbox_streams")).toBeGreaterThanOrEqual(1);
    expect(after.value("sealpost_nats_connected")).toBe(1);
    expect(d('sealpost_nats_request_duration_seconds_count{op="publish"}')).toBeGreaterThanOrEqual(5);
    expect(after.text).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(after.text).toMatch(/^nodejs_heap_size_used_bytes /m);
    await inbox.close();
    // The stream's end is counted when it is over.
    await expect
      .poll(
        async () =>
          (await scrape()).value('sealpost_rpc_requests_total{method="Receive",protocol="connect",code="canceled"}') -
          before.value('sealpost_rpc_requests_total{method="Receive",protocol="connect",code="canceled"}'),
      )
      .toBeGreaterThanOrEqual(1);
  });

  it("counts rate-limit rejections by limit, and KV watch lag of device-list changes", async () => {
    const strict = await startTestServer(nats.url, {}, { delivery: { limits: { sendsPerMinute: 2 } } });
    try {
      const carol = await createTestAccount(strict.url, "obs-carol-41a");
      const before = await scrape(`${strict.url}/metrics`);
      const c = deliveryClient(carol.devices[0], strict.url);
      const results = [];
      for (const req of sendTo(bob.devices[0], 3))
        results.push(
          await c.send(req).then(
            () => "ok",
            (e: Error) => e.message,
          ),
        );
      expect(results.filter((r) => /send rate limit exceeded/.test(r))).toHaveLength(1);
      // A device linked elsewhere: the strict instance learns of it through its KV watch.
      await createTestAccount(server.url, "obs-dave-5d0", { devices: 2 });
      await expect
        .poll(
          async () =>
            (await scrape(`${strict.url}/metrics`)).value("sealpost_kv_watch_lag_seconds_count") - before.value("sealpost_kv_watch_lag_seconds_count"),
        )
        .toBeGreaterThanOrEqual(1);
      const after = await scrape(`${strict.url}/metrics`);
      expect(
        after.value('sealpost_rate_limit_rejections_total{limit="sends_per_minute"}') -
          before.value('sealpost_rate_limit_rejections_total{limit="sends_per_minute"}'),
      ).toBe(1);
      expect(after.value('sealpost_rpc_requests_total{method="Send",protocol="connect",code="resource_exhausted"}')).toBe(1);
    } finally {
      await strict.close();
    }
  });

  it("carries no account id, device address or token anywhere", async () => {
    const { text } = await scrape();
    for (const secret of [alice.accountId, bob.accountId, "obs-", alice.devices[0].token, bob.devices[0].token, `${bob.accountId}.1`, `${bob.accountId}/1`]) {
      expect(text.includes(secret), secret).toBe(false);
    }
    // Label values come from small fixed sets.
    const labels = new Set([...text.matchAll(/(\w+)="([^"]*)"/g)].map((m) => m[1]));
    expect(
      [...labels].filter(
        (l) => !["method", "protocol", "code", "limit", "op", "le", "quantile", "type", "kind", "space", "version", "major", "minor", "patch"].includes(l),
      ),
    ).toEqual([]);
  });

  it("every metric the dashboard and the alert rules in ops/ use exists in a real scrape", async () => {
    const { text } = await scrape();
    const exposed = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    const dashboard = JSON.parse(readFileSync(new URL("../../ops/grafana-dashboard.json", import.meta.url), "utf8")) as {
      panels: { targets: { expr: string }[] }[];
    };
    const rules = parseYaml(readFileSync(new URL("../../ops/prometheus-alerts.yml", import.meta.url), "utf8")) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const exprs = [...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)), ...rules.groups.flatMap((g) => g.rules.map((r) => r.expr))];
    expect(exprs.length).toBeGreaterThan(20);
    const used = new Set(
      exprs.flatMap((e) => [...e.matchAll(/\b((?:sealpost|nodejs|process)_[a-z0-9_]+)/g)].map((m) => m[1].replace(/_(bucket|sum|count)$/, ""))),
    );
    expect([...used].filter((m) => !exposed.has(m))).toEqual([]);
  });

  it("`--metrics host:port` serves it on an admin listener, not on the main port; `--metrics off` serves none", async () => {
    const admin = await startTestServer(nats.url, { metrics: "127.0.0.1:0" });
    const off = await startTestServer(nats.url, { metrics: "off" });
    try {
      expect(admin.metricsPort).toBeGreaterThan(0);
      const { text } = await scrape(`http://127.0.0.1:${admin.metricsPort}/metrics`);
      expect(text).toMatch(/sealpost_nats_connected 1/);
      expect((await fetch(`${admin.url}/metrics`)).status).not.toBe(200);
      expect((await fetch(`${off.url}/metrics`)).status).not.toBe(200);
    } finally {
      await Promise.all([admin.close(), off.close()]);
    }
  });
});

describe("traces", () => {
  it("--otlp-endpoint exports spans over OTLP/HTTP (flushed at shutdown)", async () => {
    const posts: { path: string; type: string; bytes: number }[] = [];
    const collector = createServer((req, res) => {
      let n = 0;
      req.on("data", (c: Buffer) => (n += c.length));
      req.on("end", () => {
        posts.push({ path: req.url ?? "", type: String(req.headers["content-type"]), bytes: n });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => collector.listen(0, "127.0.0.1", () => r()));
    const port = (collector.address() as { port: number }).port;
    const exporting = await startTestServer(nats.url, { otlpEndpoint: `http://127.0.0.1:${port}/v1/traces` });
    try {
      await deliveryClient(alice.devices[0], exporting.url).getLimits({});
    } finally {
      await exporting.close();
      collector.close();
    }
    expect(posts.length).toBeGreaterThanOrEqual(1);
    expect(posts[0]).toMatchObject({ path: "/v1/traces" });
    expect(posts[0].bytes).toBeGreaterThan(0);
  });

  // One traced server for the process: the first tracer provider registered owns the globals.
  const exporter = new InMemorySpanExporter();
  let traced: RunningServer;
  beforeAll(async () => {
    traced = await startTestServer(nats.url, {}, { spanExporter: exporter });
  });
  afterAll(async () => {
    await traced?.close();
  });

  it("a Send with a traceparent is one trace: the RPC span, its NATS round trip, and the delivery on the recipient's stream", async () => {
    const erin = await createTestAccount(traced.url, "obs-erin-2b4");
    const inbox = new Inbox(deliveryOf(bob.devices[0], traced.url));
    await inbox.waitDrained();
    const traceId = randomBytes(16).toString("hex");
    const parentSpan = randomBytes(8).toString("hex");
    const [req] = sendTo(bob.devices[0], 1);
    await deliveryClient(erin.devices[0], traced.url).send(req, { headers: { traceparent: `00-${traceId}-${parentSpan}-01` } });
    await inbox.waitForMessages(1);
    await expect.poll(() => exporter.getFinishedSpans().some((s) => s.name === "deliver" && s.spanContext().traceId === traceId)).toBe(true);
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const rpc = spans.find((s) => s.name === "sealpost.delivery.v1.DeliveryService/Send")!;
    expect(rpc.parentSpanContext?.spanId).toBe(parentSpan);
    const publish = spans.find((s) => s.name === "nats publish" && s.parentSpanContext?.spanId === rpc.spanContext().spanId);
    expect(publish).toBeDefined();
    const deliver = spans.find((s) => s.name === "deliver")!;
    expect(deliver.parentSpanContext?.spanId).toBe(rpc.spanContext().spanId);
    // No ids in any attribute.
    for (const s of spans) expect(JSON.stringify(s.attributes)).not.toMatch(/obs-/);
    await inbox.close();
  });

  it("the client SDK continues the app's trace on its calls, and reports its own counters", async () => {
    const stores = createMemoryMessengerStores();
    const frank = await Messenger.createAccount({ serverUrl: traced.url, ...stores, accountId: "obs-frank-8f2", deviceName: "phone" });
    const gina = await Messenger.createAccount({ serverUrl: traced.url, ...createMemoryMessengerStores(), accountId: "obs-gina-0c9", deviceName: "phone" });
    frank.start();
    gina.start();
    // The app's span: the SDK's Send (from its outbox) continues it on the server.
    const appTrace = await trace.getTracer("app").startActiveSpan("app: send a message", async (span) => {
      await frank.sendText(gina.accountId, "hello gina");
      await frank.flush();
      span.end();
      return span.spanContext();
    });
    // The SDK's calls for it (the key bundle claim, the Send over its Session stream) and the
    // delivery to gina's stream are in the app's trace.
    const inAppTrace = () =>
      exporter
        .getFinishedSpans()
        .filter((s) => s.spanContext().traceId === appTrace.traceId)
        .map((s) => s.name);
    await expect.poll(inAppTrace).toContain("deliver");
    expect(inAppTrace()).toContain("sealpost.directory.v1.DirectoryService/ClaimKeyBundles");
    await expect.poll(async () => (await gina.stats()).received).toBe(1);
    const g = await gina.stats();
    expect(g.receiveLagMs).toBeGreaterThanOrEqual(0);
    expect(g.connection).toBe("online");
    const f = await frank.stats();
    expect(f).toMatchObject({ outboxDepth: 0, sent: 1, failed: 0 });
    await Promise.all([frank.close(), gina.close()]);
  });
});
