/**
 * Steady, bounded traffic for fault tests, straight on the Delivery RPCs (no Messenger SDK):
 * senders send opaque random payloads to receivers at a fixed total rate for a fixed time,
 * retrying each Send with the same message_id on any failure, rotating over the server
 * instances, until it is Stored (or a deadline passes). Receivers hold a Receive stream,
 * record each message in the Ledger, then ack it; on any break they reconnect to the next
 * instance. Everything is bounded in time; nothing targets anything but the given URLs.
 *
 *   const run = startTraffic({ ledger, senders, receivers, endpoints, profile });
 *   await fault();
 *   await run.finish();      // stop sending, drain receivers, final verification pass
 */
import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import { DeliveryService, SendEntrySchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import type { TestDevice } from "./accounts.js";
import type { Ledger } from "./ledger.js";

export type DeliveryClient = Client<typeof DeliveryService>;

/** The server instances clients rotate over; tests may replace `urls` while traffic runs. */
export interface Endpoints {
  urls: string[];
}

/** Bytes every payload starts with, so store and log scans can look for them. */
export const PAYLOAD_MARKER = "SEALPOST-TRAFFIC-MARKER";

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

const hexOf = (b: Uint8Array) => Buffer.from(b).toString("hex");
export const deviceKey = (d: { accountId: string; deviceId: number }) => `${d.accountId}/${d.deviceId}`;

const clientCache = new WeakMap<TestDevice, Map<string, DeliveryClient>>();

/** A DeliveryService client for `device` at `url`, sending the device's current token. */
export function deliveryClient(device: TestDevice, url: string): DeliveryClient {
  let perUrl = clientCache.get(device);
  if (!perUrl) clientCache.set(device, (perUrl = new Map()));
  let c = perUrl.get(url);
  if (!c) {
    const withToken: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${device.token}`);
      return next(req);
    };
    c = createClient(DeliveryService, createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: true, interceptors: [withToken] }));
    perUrl.set(url, c);
  }
  return c;
}

export interface ReceiverBehaviour {
  /** Receive window. Default 16. */
  maxInFlight?: number;
  /** Wait this long after recording a message before acking it (a slow receiver). */
  ackDelayMs?: number;
  /** Every n-th message: stop reading for stallMs with the stream open (a stalled receiver). */
  stallEvery?: number;
  stallMs?: number;
  /**
   * Every n-th message: send its Ack and drop the connection before the answer (abort the
   * call and the stream at once), then reconnect: a client that disconnects mid-ack.
   */
  disconnectMidAckEvery?: number;
}

/** Holds one Receive stream at a time for one device, reconnecting on any break. */
export class TrafficReceiver {
  reconnects = 0;
  received = 0;
  /** Stalls and mid-ack disconnects this receiver performed (faults it injected itself). */
  faults = 0;
  private readonly abort = new AbortController();
  private readonly loop: Promise<void>;
  private stream: AbortController | undefined;
  private count = 0;

  constructor(
    readonly device: TestDevice,
    private readonly endpoints: Endpoints,
    private readonly ledger: Ledger,
    private readonly behaviour: ReceiverBehaviour = {},
    startAt = 0,
  ) {
    this.loop = this.run(startAt);
  }

  get key(): string {
    return deviceKey(this.device.address);
  }

  /** Ends the current stream (as a network drop would); the loop reconnects. */
  dropStream(): void {
    this.stream?.abort();
  }

  private async run(startAt: number): Promise<void> {
    for (let i = startAt; !this.abort.signal.aborted; i++) {
      const urls = this.endpoints.urls;
      const client = deliveryClient(this.device, urls[i % urls.length]);
      const stream = (this.stream = new AbortController());
      const signal = AbortSignal.any([this.abort.signal, stream.signal]);
      try {
        for await (const ev of client.receive({ maxInFlight: this.behaviour.maxInFlight ?? 16 }, { signal })) {
          if (ev.event.case === "replaced") break;
          if (ev.event.case !== "message") continue;
          const m = ev.event.value;
          if (m.ephemeral) continue;
          const id = hexOf(m.messageId);
          this.received++;
          this.ledger.delivered(this.key, id, m.sequence);
          await this.ledger.inspect(this.key, id, m.sequence);
          const n = ++this.count;
          const b = this.behaviour;
          if (b.stallEvery && n % b.stallEvery === 0) {
            this.faults++;
            await sleep(b.stallMs ?? 2000, this.abort.signal);
          }
          if (b.ackDelayMs) await sleep(b.ackDelayMs, this.abort.signal);
          if (b.disconnectMidAckEvery && n % b.disconnectMidAckEvery === 0) {
            // Fire the Ack and hang up before its answer: the ack may or may not have
            // happened; either way the message must not come back after a *successful* ack.
            this.faults++;
            const call = new AbortController();
            const pending = client.ack({ sequences: [m.sequence] }, { signal: call.signal }).catch(() => undefined);
            await sleep(Math.floor(Math.random() * 3));
            call.abort();
            stream.abort();
            await pending;
            break;
          }
          await this.ack(m.sequence, id, i);
        }
      } catch {
        // Stream broke (instance gone, NATS failing over, our own drop): reconnect below.
      }
      if (this.abort.signal.aborted) return;
      this.reconnects++;
      await sleep(100, this.abort.signal);
    }
  }

  private async ack(seq: bigint, id: string, start: number): Promise<void> {
    for (let attempt = start; !this.abort.signal.aborted; attempt++) {
      const urls = this.endpoints.urls;
      try {
        await deliveryClient(this.device, urls[attempt % urls.length]).ack({ sequences: [seq] }, { timeoutMs: 5000, signal: this.abort.signal });
        this.ledger.acked(id);
        return;
      } catch {
        await sleep(150, this.abort.signal);
      }
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }
}

export interface TrafficOptions {
  ledger: Ledger;
  /** Sending devices (single-device accounts: no own-device fan-out needed). */
  senders: TestDevice[];
  /** Receiving devices (single-device accounts). */
  receivers: TestDevice[];
  endpoints: Endpoints;
  sendsPerSecond: number;
  durationMs: number;
  /** Per-receiver behaviour (index-aligned with receivers; missing = well-behaved). */
  behaviours?: ReceiverBehaviour[];
  /** Index of the endpoint every receiver connects to first (default: spread over all). */
  receiverStartAt?: number;
  /** Keep retrying an unstored Send until this long after the traffic ends. */
  retryGraceMs?: number;
  payloadBytes?: number;
}

export interface TrafficRun {
  receivers: TrafficReceiver[];
  /** Resolves when every sender has stopped (after durationMs plus its last retries). */
  sending: Promise<void>;
  /**
   * Waits for sending to end and every acknowledged message to be delivered (at most
   * drainMs), stops the receivers, then reads each mailbox on fresh streams to Drained until
   * nothing acknowledged is undelivered (bounded): whatever comes then after an ack counts as
   * duplicated after ack.
   */
  finish(drainMs: number): Promise<void>;
}

export function startTraffic(o: TrafficOptions): TrafficRun {
  const receivers = o.receivers.map((d, i) => new TrafficReceiver(d, o.endpoints, o.ledger, o.behaviours?.[i], o.receiverStartAt ?? i));
  const endAt = Date.now() + o.durationMs;
  const giveUpAt = endAt + (o.retryGraceMs ?? 30_000);
  const intervalMs = (1000 * o.senders.length) / o.sendsPerSecond;

  const sendOne = async (sender: TestDevice, receiver: TestDevice, attempt0: number) => {
    const messageId = new Uint8Array(randomBytes(16));
    const id = hexOf(messageId);
    o.ledger.sent(id, deviceKey(sender.address), deviceKey(receiver.address));
    const body = Buffer.concat([Buffer.from(PAYLOAD_MARKER), randomBytes(o.payloadBytes ?? 64)]);
    const req = {
      messageId,
      sharedBody: body,
      entries: [create(SendEntrySchema, { device: create(DeviceAddressSchema, receiver.address), entry: randomBytes(32) })],
    };
    for (let attempt = attempt0; Date.now() < giveUpAt; attempt++) {
      const urls = o.endpoints.urls;
      try {
        const res = await deliveryClient(sender, urls[attempt % urls.length]).send(req, { timeoutMs: 5000 });
        if (res.outcome.case !== "stored") throw new Error(`unexpected outcome ${res.outcome.case}`);
        o.ledger.stored(id, res.outcome.value.entries[0].sequence);
        return;
      } catch {
        await sleep(150);
      }
    }
  };

  // Each sender sends one message at a time (per-sender order is defined by that), paced.
  const sending = Promise.all(
    o.senders.map(async (sender, s) => {
      await sleep((intervalMs * s) / o.senders.length);
      for (let n = 0; Date.now() < endAt; n++) {
        const next = Date.now() + intervalMs;
        await sendOne(sender, o.receivers[(s + n) % o.receivers.length], s + n);
        await sleep(Math.max(0, next - Date.now()));
      }
    }),
  ).then(() => undefined);

  return {
    receivers,
    sending,
    finish: async (drainMs) => {
      await sending;
      const start = Date.now();
      while (o.ledger.pending().length > 0 && Date.now() - start < drainMs) await sleep(50);
      const left = o.ledger.pending().length;
      if (left) o.ledger.note(`drain: ${left} acknowledged messages still undelivered after ${Date.now() - start} ms (the final pass reads them)`);
      await Promise.all(receivers.map((r) => r.stop()));
      await Promise.all(o.receivers.map((d, i) => verifyMailbox(d, o.endpoints, i + 1, o.ledger)));
    },
  };
}

/** How long the final pass may take per device (it ends as soon as nothing is pending). */
const VERIFY_MS = 60_000;

/**
 * The final pass: fresh streams read to Drained, recording (and acking) whatever the mailbox
 * still holds. A stream that ends early (Replaced, an error) or answers Drained while the
 * ledger still has acknowledged-but-undelivered mail for the device is followed by another
 * fresh stream (next instance), until nothing is pending or VERIFY_MS passes. Each such
 * retry is noted in the problems, so a premature Drained stays visible; what is still
 * undelivered at the end counts as lost.
 */
async function verifyMailbox(device: TestDevice, endpoints: Endpoints, start: number, ledger: Ledger): Promise<void> {
  const key = deviceKey(device.address);
  const deadline = Date.now() + VERIFY_MS;
  for (let attempt = 0; ; attempt++) {
    const urls = endpoints.urls;
    const url = urls[(start + attempt) % urls.length];
    const ended = await verifyOnce(device, url, ledger, deadline);
    const pending = ledger.pendingFor(key);
    if (ended === "drained" && pending === 0) return;
    if (Date.now() >= deadline) {
      ledger.note(`final pass for ${key}: gave up after ${attempt + 1} streams, last ended on ${ended}, ${pending} still undelivered`);
      return;
    }
    ledger.note(`final pass for ${key}: stream ${attempt + 1} (${url}) ended on ${ended} with ${pending} acknowledged messages undelivered; reading again`);
    await sleep(250);
  }
}

/** One fresh stream until Drained, the end of the stream, an error or the deadline; says which. */
async function verifyOnce(device: TestDevice, url: string, ledger: Ledger, deadline: number): Promise<string> {
  const client = deliveryClient(device, url);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), Math.max(0, deadline - Date.now()));
  try {
    for await (const ev of client.receive({}, { signal: abort.signal })) {
      if (ev.event.case === "drained") return "drained";
      if (ev.event.case === "replaced") return "replaced";
      if (ev.event.case !== "message" || ev.event.value.ephemeral) continue;
      const m = ev.event.value;
      const id = hexOf(m.messageId);
      ledger.delivered(deviceKey(device.address), id, m.sequence);
      await client.ack({ sequences: [m.sequence] }, { timeoutMs: 5000 });
      ledger.acked(id);
    }
    return "end of stream";
  } catch (err) {
    return abort.signal.aborted ? "deadline" : `error (${String(err)})`;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}
