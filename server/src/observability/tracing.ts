/**
 * OpenTelemetry traces, off by default (`--otlp-endpoint` turns them on; the SDK is loaded
 * only then). A span per RPC, child of the caller's W3C `traceparent`; the NATS round trips
 * of the call as its children; and a `deliver` span where a stored message goes out on the
 * recipient's stream, child of the Send that stored it (its context rides in the stored
 * message's `traceparent` header, or with the record when pushed in memory), so a Send can
 * be followed to the receiving stream.
 *
 * Spans carry method names, codes and sizes, never account ids, device ids, subjects or
 * contents. With tracing off every function here is a plain call.
 */
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type SpanContext, type Tracer } from "@opentelemetry/api";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";

const TRACER = "sealpost-server";

export interface Tracing {
  readonly enabled: boolean;
  /** Runs `fn` in a server span for one RPC (`headers`: the request's, for traceparent). */
  rpc<T>(method: string, headers: HeaderSource, fn: () => Promise<T>): Promise<T>;
  /** A client span for one NATS round trip in the current context; call the result when it is answered. */
  natsRoundTrip(op: string): ((error?: string) => void) | undefined;
  /** The current span's context as a traceparent header value (to store with a message). */
  currentTraceparent(): string | undefined;
  /** A `deliver` span, child of the stored message's traceparent, ended at once (the write is queued). */
  delivered(traceparent: string | undefined, attributes: Record<string, string | number>): void;
  shutdown(): Promise<void>;
}

/** Header lookups for traceparent/tracestate: a plain object (node:http2) or a Headers. */
export type HeaderSource = Record<string, string | string[] | undefined> | { get(name: string): string | null };

export const noTracing: Tracing = {
  enabled: false,
  rpc: (_m, _h, fn) => fn(),
  natsRoundTrip: () => undefined,
  currentTraceparent: () => undefined,
  delivered: () => {},
  shutdown: async () => {},
};

const getter = {
  get(carrier: HeaderSource, key: string): string | undefined {
    if (typeof (carrier as { get?: unknown }).get === "function") return (carrier as { get(n: string): string | null }).get(key) ?? undefined;
    const v = (carrier as Record<string, string | string[] | undefined>)[key];
    return Array.isArray(v) ? v[0] : v;
  },
  keys(carrier: HeaderSource): string[] {
    if (typeof (carrier as { get?: unknown }).get === "function") return ["traceparent", "tracestate"];
    return Object.keys(carrier);
  },
};

/**
 * Starts the SDK (a tracer provider with the AsyncLocalStorage context manager and the W3C
 * propagator) exporting to `endpoint` over OTLP/HTTP, or to `exporter` (tests).
 */
export async function startTracing(o: { endpoint?: string; exporter?: SpanExporter; serviceName?: string }): Promise<Tracing> {
  const { NodeTracerProvider } = await import("@opentelemetry/sdk-trace-node");
  const { BatchSpanProcessor, SimpleSpanProcessor } = await import("@opentelemetry/sdk-trace-base");
  const { resourceFromAttributes } = await import("@opentelemetry/resources");
  let processor: InstanceType<typeof BatchSpanProcessor> | InstanceType<typeof SimpleSpanProcessor>;
  if (o.exporter) processor = new SimpleSpanProcessor(o.exporter);
  else {
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
    processor = new BatchSpanProcessor(new OTLPTraceExporter({ url: o.endpoint }));
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": o.serviceName ?? "sealpost-server" }),
    spanProcessors: [processor],
  });
  // Globally: the AsyncLocalStorage context manager and the W3C propagator (the first
  // registration in a process wins). Our spans come from this provider in any case.
  provider.register();
  return enabledTracing(provider.getTracer(TRACER), () => provider.shutdown());
}

function enabledTracing(tracer: Tracer, shutdown: () => Promise<void>): Tracing {
  return {
    enabled: true,
    rpc(method, headers, fn) {
      const parent = propagation.extract(ROOT_CONTEXT, headers, getter);
      const [service, name] = method.split("/");
      const span = tracer.startSpan(
        method,
        { kind: SpanKind.SERVER, attributes: { "rpc.system": "connect_rpc", "rpc.service": service, "rpc.method": name } },
        parent,
      );
      return context.with(trace.setSpan(parent, span), async () => {
        try {
          const r = await fn();
          span.setStatus({ code: SpanStatusCode.OK });
          return r;
        } catch (err) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: (err as { name?: string })?.name ?? "error" });
          throw err;
        } finally {
          span.end();
        }
      });
    },
    natsRoundTrip(op) {
      if (!trace.getSpan(context.active())) return undefined; // only inside a traced call
      const span = tracer.startSpan(`nats ${op}`, { kind: SpanKind.CLIENT, attributes: { "messaging.system": "nats", "sealpost.nats.op": op } });
      return (error) => {
        if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
        span.end();
      };
    },
    currentTraceparent() {
      const sc = trace.getSpan(context.active())?.spanContext();
      return sc && trace.isSpanContextValid(sc) ? traceparentOf(sc) : undefined;
    },
    delivered(traceparent, attributes) {
      if (!traceparent) return;
      const parent: Context = propagation.extract(ROOT_CONTEXT, { traceparent }, getter);
      tracer.startSpan("deliver", { kind: SpanKind.PRODUCER, attributes }, parent).end();
    },
    shutdown,
  };
}

function traceparentOf(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1).toString(16).padStart(2, "0")}`;
}
