/**
 * The sealpost side of the server benchmark, straight on the Delivery RPCs over HTTP/2
 * (Connect binary, lean clients on node:http2): receivers holding Receive streams that ack in batches, and senders whose
 * messages are numbered in their message_id so an arrival finds its send time.
 */
import type { SendRequest, SendResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { create } from "@bufbuild/protobuf";
import { SendRequestSchema, SendSealedRequestSchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type * as http2 from "node:http2";
import { ack, UnaryError, type RawUnaryPool } from "./raw-unary.js";
import { openReceive, type RawReceive } from "./raw-receive.js";
import type { Http2Pool } from "./raw-http2.js";
import { ACK_DELAY_MS, RETRY_AFTER_HEADER } from "@sealpost/client";
import type { BenchDevice } from "./bench-accounts.js";

/** A pairwise entry is ~100-200 bytes (ratchet header + wrapped key); the body is the payload. */
export const ENTRY_BYTES = 160;
const ENTRY = new Uint8Array(ENTRY_BYTES).fill(3);

/** message_id = 8 bytes of run tag + 8 bytes counter, so arrivals map back to their send. */
export class MessageIds {
  private readonly tag = crypto.getRandomValues(new Uint8Array(8));
  next = 0;
  make(n: number): Uint8Array {
    const id = new Uint8Array(16);
    id.set(this.tag, 0);
    new DataView(id.buffer).setBigUint64(8, BigInt(n));
    return id;
  }
  /** The counter, or -1 when the id is not from this run. */
  read(id: Uint8Array): number {
    if (id.length !== 16) return -1;
    for (let i = 0; i < 8; i++) if (id[i] !== this.tag[i]) return -1;
    return Number(new DataView(id.buffer, id.byteOffset, 16).getBigUint64(8));
  }
}

export function sendRequest(id: Uint8Array, body: Uint8Array, to: BenchDevice[]): SendRequest {
  return create(SendRequestSchema, {
    messageId: id,
    sharedBody: body,
    entries: to.map((d) => ({ device: { accountId: d.accountId, deviceId: d.deviceId }, entry: ENTRY })),
  });
}

/** Sends the server shed (RESOURCE_EXHAUSTED) that `send` retried, since the process started. */
export const shed = { count: 0 };

/**
 * A Send through the lean client; throws unless Stored. A Send the server sheds (RESOURCE_EXHAUSTED,
 * HTTP 429: admission control) is retried after the delay it names, marked `retry`, as the
 * TypeScript client's outbox does.
 */
export async function send(client: RawUnaryPool, from: BenchDevice, req: SendRequest): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    let res: SendResponse;
    try {
      res = await client.send(from.headers, attempt ? { ...req, retry: true } : req);
    } catch (err) {
      const retryAfter = err instanceof UnaryError && err.status === 429 ? Number(err.headers[RETRY_AFTER_HEADER] ?? 200) : undefined;
      if (retryAfter === undefined || attempt >= 100) throw err;
      shed.count++;
      await new Promise((r) => setTimeout(r, retryAfter));
      continue;
    }
    if (res.outcome.case !== "stored") throw new Error(`send not stored: ${res.outcome.case} ${JSON.stringify(res.outcome.value)}`);
    return;
  }
}

/** The same Send as SendSealed (no token): the recipient's access key instead. */
export async function sendSealed(client: RawUnaryPool, accessKey: Uint8Array, req: SendRequest): Promise<void> {
  const sealed = create(SendSealedRequestSchema, { accountId: req.entries[0].device!.accountId, accessKey, send: req });
  const res = await client.sendSealed(sealed);
  if (res.outcome.case !== "stored") throw new Error(`sealed send not stored: ${res.outcome.case} ${JSON.stringify(res.outcome.value)}`);
}

export type ArrivalListener = (counter: number, at: number) => void;

/**
 * Receive streams for `devices`, spread over the pool's connections, through the lean
 * client (raw-receive.ts). Each acks what it got in batches on its own connection (one Ack
 * in flight per stream). `arrivals` counts every message of this run's ids.
 */
export class Receivers {
  arrivals = 0;
  private readonly streams: RawReceive[] = [];
  private readonly loops: Promise<void>[] = [];
  listener: ArrivalListener | undefined;
  private closing = false;

  constructor(
    private readonly pool: Http2Pool,
    private readonly ids: MessageIds,
  ) {}

  /** Opens a stream per device, the i-th on connection `first + i` of the pool (round robin); resolves when every stream reported Drained once. */
  async open(devices: BenchDevice[], first = 0): Promise<void> {
    const drained: Promise<void>[] = [];
    devices.forEach((d, i) => {
      let onDrained!: () => void;
      drained.push(new Promise<void>((r) => (onDrained = r)));
      this.loops.push(this.loop(this.pool.at(first + i), d, onDrained));
    });
    await Promise.all(drained);
  }

  private async loop(session: http2.ClientHttp2Session, d: BenchDevice, onDrained: () => void): Promise<void> {
    const pending: bigint[] = [];
    let acking = false;
    let scheduled = false;
    const flush = async () => {
      if (acking) return;
      acking = true;
      try {
        while (pending.length && !this.closing) await ack(session, d.headers, pending.splice(0, 1000));
      } catch (err) {
        if (!this.closing) console.error(`ack failed for ${d.accountId}: ${(err as Error).message}`);
      } finally {
        acking = false;
      }
    };
    const stream = openReceive(session, d.headers, (r) => {
      if (r.event.case === "message") {
        const now = performance.now();
        const m = r.event.value;
        const c = this.ids.read(m.messageId);
        if (c >= 0) {
          this.arrivals++;
          this.listener?.(c, now);
        }
        pending.push(m.sequence);
        // As clients/ts does: one Ack for a burst, ACK_DELAY_MS after its first message.
        if (!scheduled) {
          scheduled = true;
          setTimeout(() => {
            scheduled = false;
            void flush();
          }, ACK_DELAY_MS);
        }
      } else if (r.event.case === "drained") {
        onDrained();
      }
    });
    this.streams.push(stream);
    try {
      await stream.done;
    } catch (err) {
      if (!this.closing) console.error(`receive stream of ${d.accountId} ended: ${(err as Error).message}`);
    } finally {
      onDrained();
    }
  }

  async waitFor(arrivals: number, timeoutMs: number): Promise<boolean> {
    const end = performance.now() + timeoutMs;
    while (this.arrivals < arrivals && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
    return this.arrivals >= arrivals;
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const s of this.streams) s.close();
    await Promise.allSettled(this.loops);
  }
}

/**
 * Reconnect with catch-up for one device: open Receive, take messages until Drained, ack them
 * all in one call while the stream is open (as clients/ts does), close. Returns the number of messages.
 */
export async function catchUp(session: http2.ClientHttp2Session, d: BenchDevice): Promise<number> {
  const seqs: bigint[] = [];
  let drained!: () => void;
  const atDrained = new Promise<void>((r) => (drained = r));
  const stream = openReceive(session, d.headers, (r) => {
    if (r.event.case === "message") seqs.push(r.event.value.sequence);
    else if (r.event.case === "drained") drained();
  });
  try {
    await Promise.race([atDrained, stream.done]);
    if (seqs.length) await ack(session, d.headers, seqs);
  } finally {
    stream.close();
  }
  return seqs.length;
}
