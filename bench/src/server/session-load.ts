/**
 * The Session side of the server benchmark: one DeliveryService.Session per device, sends
 * pipelined on it (results matched by id), and for receivers the mailbox on the same stream,
 * acked in batches on it. Spoken as the Connect streaming protocol straight on a node:http2
 * stream (envelopes: a flags byte, a u32 length, the message; the last one, flag 2, the
 * end-of-stream JSON), not through connect-node's client, whose per-message async pipeline
 * cost the load generator more CPU than the server spent on the same message.
 */
import type * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  DeliveryService,
  SessionRequestSchema,
  SessionResponseSchema,
  type SendRequest,
  type SessionRequest,
  type SessionResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { BenchDevice } from "./bench-accounts.js";
import type { MessageIds } from "./delivery-load.js";
import { envelope, EnvelopeReader } from "./raw-http2.js";
import { ACK_DELAY_MS } from "@sealpost/client";

const SESSION_PATH = `/${DeliveryService.typeName}/${DeliveryService.method.session.name}`;

export class BenchSession {
  arrivals = 0;
  /** Called with the message counter and arrival time of each of this run's messages. */
  listener: ((counter: number, at: number) => void) | undefined;
  private readonly stream: http2.ClientHttp2Stream;
  private readonly pending = new Map<bigint, { resolve(): void; reject(e: Error): void }>();
  private nextId = 1n;
  private readonly acks: bigint[] = [];
  private ackScheduled = false;
  private out: Buffer[] = [];
  private flushScheduled = false;
  private closing = false;
  private readonly done: Promise<void>;
  private onDrained: (() => void) | undefined;

  constructor(
    session: http2.ClientHttp2Session,
    private readonly device: BenchDevice,
    private readonly ids?: MessageIds,
  ) {
    this.stream = session.request({
      ":method": "POST",
      ":path": SESSION_PATH,
      "content-type": "application/connect+proto",
      "connect-protocol-version": "1",
      ...device.headers,
    });
    const reader = new EnvelopeReader(
      (payload) => this.handle(fromBinary(SessionResponseSchema, payload)),
      (text) => {
        if (text.includes('"error"') && !this.closing) console.error(`session of ${device.accountId} ended: ${text}`);
      },
    );
    this.stream.on("data", (chunk: Buffer) => reader.push(chunk));
    this.done = new Promise<void>((resolve) => {
      const end = (err?: Error) => {
        if (err && !this.closing) console.error(`session of ${device.accountId} ended: ${err.message}`);
        for (const p of this.pending.values()) p.reject(new Error("session ended"));
        this.pending.clear();
        this.onDrained?.();
        resolve();
      };
      this.stream.once("error", end);
      this.stream.once("close", () => end());
    });
  }

  private handle(r: SessionResponse): void {
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
          // As clients/ts does: one Ack for a burst, ACK_DELAY_MS after its first message.
          setTimeout(() => this.flushAcks(), ACK_DELAY_MS);
        }
      } else if (ev.case === "drained") this.onDrained?.();
    }
  }

  /** Queues a request; everything queued in one turn goes out in one write. */
  private push(r: SessionRequest): void {
    this.out.push(envelope(toBinary(SessionRequestSchema, r)));
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        const b = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out);
        this.out = [];
        if (!this.stream.destroyed && !this.closing) this.stream.write(b);
      });
    }
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
    this.closing = true;
    this.stream.close();
    await this.done;
  }

  get name(): string {
    return this.device.accountId;
  }
}
