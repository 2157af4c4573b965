/**
 * grpc.health.v1: what load balancers and probes ask. "" is the whole server; each sealpost
 * service is listed by its full name. NOT_SERVING while NATS is unreachable or during
 * shutdown, so balancers drain this instance.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { EventEmitter, on } from "node:events";
import { type Health, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as Status } from "@sealpost/gen/grpc/health/v1/health_pb.js";

export class HealthStatus {
  readonly #status = new Map<string, Status>();
  readonly #changes = new EventEmitter();

  constructor(services: string[]) {
    this.#changes.setMaxListeners(0);
    for (const s of ["", ...services]) this.#status.set(s, Status.NOT_SERVING);
  }

  /** Sets every known service (including "") to the same status. */
  setAll(status: Status): void {
    for (const s of this.#status.keys()) this.set(s, status);
  }

  set(service: string, status: Status): void {
    if (this.#status.get(service) === status) return;
    this.#status.set(service, status);
    this.#changes.emit("change", service);
  }

  get(service: string): Status | undefined {
    return this.#status.get(service);
  }

  /** Current status, then every change, until the signal aborts. */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<Status> {
    let last = this.get(service) ?? Status.SERVICE_UNKNOWN;
    yield last;
    try {
      for await (const [changed] of on(this.#changes, "change", { signal })) {
        if (changed !== service) continue;
        const now = this.get(service) ?? Status.SERVICE_UNKNOWN;
        if (now !== last) yield (last = now);
      }
    } catch (err) {
      if ((err as Error).name !== "AbortError") throw err;
    }
  }
}

export function healthService(status: HealthStatus): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const s = status.get(req.service);
      if (s === undefined) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status: s });
    },
    async *watch(req, ctx) {
      for await (const s of status.watch(req.service, ctx.signal)) {
        yield create(HealthCheckResponseSchema, { status: s });
      }
    },
  };
}
