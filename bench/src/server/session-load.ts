/**
 * The Session side of the server benchmark: one DeliveryService.Session per device, sends
 * pipelined on it (results matched by id), and for receivers the mailbox on the same stream,
 * acked in batches on it.
 */
import { create } from "@bufbuild/protobuf";
import { SessionRequestSchema, type SendRequest, type SessionRequest } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { BenchDevice } from "./bench-accounts.js";
import type { DeliveryClient, MessageIds } from "./delivery-load.js";
import { Pushable } from "@sealpost/client/util/pushable.js";

export class BenchSession {
  arrivals = 0;
  /** Called with the message counter and arrival time of each of this run's messages. */
  listener: ((counter: number, at: number) => void) | undefined;
  private readonly requests = new Pushable<SessionRequest>();
  private readonly pending = new Map<bigint, { resolve(): void; reject(e: Error): void }>();
  private nextId = 1n;
  private readonly acks: bigint[] = [];
  private ackScheduled = false;
  private readonly abort = new AbortController();
  private readonly done: Promise<void>;
  private onDrained: (() => void) | undefined;

  constructor(
    client: DeliveryClient,
    private readonly device: BenchDevice,
    private readonly ids?: MessageIds,
  ) {
    this.done = (async () => {
      try {
        for await (const r of client.session(this.requests, { headers: device.headers, signal: this.abort.signal })) {
          if (r.kind.case === "sendResult") {
            const p = this.pending.get(r.kind.value.id);
            this.pending.delete(r.kind.value.id);
            if (r.kind.value.result.case === "response" && r.kind.value.result.value.outcome.case === "stored") p?.resolve();
            else p?.reject(new Error(`send not stored: ${JSON.stringify(r.kind.value.result.value)}`));
          } else if (r.kind.case === "mailbox") {
            const ev = r.kind.value.event;
            if (ev.case === "message") {
              const c = this.ids ? this.ids.read(ev.value.messageId) : -1;
              if (c >= 0) {
                this.arrivals++;
                this.listener?.(c, performance.now());
              }
              this.acks.push(ev.value.sequence);
              if (!this.ackScheduled) {
                this.ackScheduled = true;
                setImmediate(() => this.flushAcks());
              }
            } else if (ev.case === "drained") this.onDrained?.();
          }
        }
      } catch (err) {
        if (!this.abort.signal.aborted) console.error(`session of ${device.accountId} ended: ${(err as Error).message}`);
      } finally {
        for (const p of this.pending.values()) p.reject(new Error("session ended"));
        this.onDrained?.();
      }
    })();
  }

  private push(r: SessionRequest): void {
    this.requests.push(r);
  }

  private flushAcks(): void {
    this.ackScheduled = false;
    while (this.acks.length) {
      this.push(create(SessionRequestSchema, { kind: { case: "ack", value: { id: this.nextId++, request: { sequences: this.acks.splice(0, 1000) } } } }));
    }
  }

  /** Opens the mailbox; resolves at Drained. */
  receive(): Promise<void> {
    const drained = new Promise<void>((r) => (this.onDrained = r));
    this.push(create(SessionRequestSchema, { kind: { case: "receive", value: { maxInFlight: 0 } } }));
    return drained;
  }

  send(request: SendRequest): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.push(create(SessionRequestSchema, { kind: { case: "send", value: { id, request } } }));
    });
  }

  async close(): Promise<void> {
    this.abort.abort();
    this.requests.end();
    await this.done;
  }

  get name(): string {
    return this.device.accountId;
  }
}
