/**
 * Helpers for the delivery tests: per-instance clients of a test device, Send shorthands, an
 * Inbox that records one Receive stream, a direct look into a device's mailbox in NATS, and
 * the context and clients of a delivery service built inside the test process.
 */
import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient, createRouterTransport, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import { DeliveryService, SendEntrySchema, type ReceiveResponse, type SendResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import type { KV } from "@nats-io/kv";
import type { TestDevice } from "@sealpost/test-support";
import type { Nats } from "../src/nats/connection.js";
import type { Layout } from "../src/nats/layout.js";
import type { TokenSigner } from "../src/auth/tokens.js";
import { defaultConfig } from "../src/config.js";
import { silentLogger } from "../src/logger.js";
import { noMetrics } from "../src/observability/metrics.js";
import { noTracing } from "../src/observability/tracing.js";
import type { ServerContext } from "../src/server-context.js";
import type { Delivery } from "../src/delivery/service.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import type { DeviceRef } from "../src/device-address.js";
import { encodeRecord } from "../src/delivery/mailbox-record.js";
import { ReceiveStream, type ReceiveStreamDeps } from "../src/delivery/receive-stream.js";
import { ReceiveHub } from "../src/delivery/receive-hub.js";
import type { AuthenticatedDevice } from "../src/auth/authenticator.js";
import type { RunningServer } from "../src/server.js";
import { expect, onTestFinished } from "vitest";

export type DeliveryClient = Client<typeof DeliveryService>;

/** A DeliveryService client for `device` on the instance at `baseUrl` (its current token). */
export function deliveryOf(device: TestDevice, baseUrl: string): DeliveryClient {
  const withToken: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${device.token}`);
    return next(req);
  };
  return createClient(DeliveryService, createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors: [withToken] }));
}

export const newMessageId = () => new Uint8Array(randomBytes(16));

type Addr = { accountId: string; deviceId: number };
const addrOf = (d: TestDevice | Addr): Addr => ("address" in d ? d.address : d);

/** One entry per device; each entry's bytes name the device so tests can check routing. */
export function entriesFor(devices: (TestDevice | Addr)[], tag = "") {
  return devices.map((d) => {
    const a = addrOf(d);
    return create(SendEntrySchema, { device: create(DeviceAddressSchema, a), entry: new TextEncoder().encode(`${tag}->${a.accountId}/${a.deviceId}`) });
  });
}

export function storedOf(res: SendResponse) {
  if (res.outcome.case !== "stored") throw new Error(`expected Stored, got ${res.outcome.case}: ${JSON.stringify(res.outcome.value)}`);
  return res.outcome.value;
}

/** vi.waitFor's options: its 1 s default is too short on a loaded 2-core CI machine (a wait, not a timing assertion). */
export const WAIT = { timeout: 15_000, interval: 20 };

export const text = (b: Uint8Array) => new TextDecoder().decode(b);
export const bytes = (s: string) => new TextEncoder().encode(s);

export async function waitUntil(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Records every event of one Receive stream. */
export class Inbox {
  readonly events: ReceiveResponse[] = [];
  readonly done: Promise<ConnectError | undefined>;
  ended = false;
  error: ConnectError | undefined;
  private readonly abort = new AbortController();

  constructor(client: DeliveryClient, req: { afterSequence?: bigint; maxInFlight?: number } = {}) {
    this.done = (async () => {
      try {
        for await (const ev of client.receive(req, { signal: this.abort.signal })) this.events.push(ev);
      } catch (err) {
        if (!this.abort.signal.aborted) this.error = ConnectError.from(err);
      } finally {
        this.ended = true;
      }
      return this.error;
    })();
  }

  get messages(): MailboxMessage[] {
    return this.events.flatMap((e) => (e.event.case === "message" ? [e.event.value] : []));
  }

  get drained(): boolean {
    return this.events.some((e) => e.event.case === "drained");
  }

  get replaced(): boolean {
    return this.events.some((e) => e.event.case === "replaced");
  }

  async waitForMessages(n: number): Promise<MailboxMessage[]> {
    await waitUntil(`${n} messages (have ${this.messages.length})`, () => this.messages.length >= n || this.ended);
    return this.messages;
  }

  async waitDrained(): Promise<void> {
    await waitUntil("the drained marker", () => this.drained || this.ended);
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

/** Sequences currently stored in a device's mailbox, read straight from JetStream. */
export async function mailboxSequences(nats: Nats, partitions: number, device: Addr): Promise<number[]> {
  const mb = new Mailboxes(nats, partitions);
  const loc = mb.locate(device);
  const out: number[] = [];
  let after = 0;
  for (;;) {
    const m = await mb.next(loc, after);
    if (!m) return out;
    out.push(m.seq);
    after = m.seq;
  }
}

/**
 * `target` with one method replaced and every other member the real object's (methods bound
 * to it): for tests that make one call fail, wait or be counted.
 */
export function withMethod<T extends object, K extends keyof T>(target: T, name: K, method: T[K]): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      if (prop === name) return method;
      const v = Reflect.get(t, prop, receiver);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

/** `mailboxes` with the Ack's JetStream operations counted: count checks, purges and single deletes. */
export function countingAckOps(mailboxes: Mailboxes): { mailboxes: Mailboxes; ops: { counts: number; purges: number; deletes: number } } {
  const ops = { counts: 0, purges: 0, deletes: 0 };
  const counted = withMethod(
    withMethod(
      withMethod(mailboxes, "countStored", (d: DeviceRef) => (ops.counts++, mailboxes.countStored(d))),
      "purgeBelow",
      (d: DeviceRef, before: number) => (ops.purges++, mailboxes.purgeBelow(d, before)),
    ),
    "delete",
    (stream: string, seq: number) => (ops.deletes++, mailboxes.delete(stream, seq)),
  );
  return { mailboxes: counted, ops };
}

/** The receivers bucket with put() held until release() (a slow claim). */
export function heldPuts(kv: KV): { kv: KV; release: () => void; started: Promise<void> } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const startedP = new Promise<void>((r) => (started = r));
  const wrapped = withMethod(kv, "put", async (...args: Parameters<KV["put"]>) => {
    started();
    await gate;
    return kv.put(...args);
  });
  return { kv: wrapped, release, started: startedP };
}

/** The context of a delivery service built in the test process on `nats` (defaults, no metrics, no tracing). */
export function inProcessContext(nats: Nats, layout: Layout, tokens: TokenSigner, mailboxPartitions: number): ServerContext {
  return {
    config: defaultConfig({ mailboxPartitions }),
    log: silentLogger,
    nats,
    layout,
    tokens,
    now: Date.now,
    random: (n) => crypto.getRandomValues(new Uint8Array(n)),
    shutdownSignal: new AbortController().signal,
    metrics: noMetrics,
    tracing: noTracing,
  };
}

/** Clients of `d` over an in-memory router transport, each calling as a device with a fresh token. */
export function routerClients(d: Delivery, tokens: TokenSigner): (accountId: string, deviceId: number) => DeliveryClient {
  const transport = createRouterTransport(({ service }) => service(DeliveryService, d.impl));
  return (accountId, deviceId) => {
    const { token } = tokens.issue(accountId, deviceId, 60_000);
    const c = createClient(DeliveryService, transport);
    return new Proxy(c, {
      get:
        (target, prop) =>
        (req: unknown, opts: { headers?: Record<string, string> } = {}) =>
          (target as any)[prop](req, { ...opts, headers: { ...opts.headers, authorization: `Bearer ${token}` } }),
    }) as DeliveryClient;
  };
}

/** The next event of a Receive stream's generator driven by hand (a stream that waits for its client between events); fails after `ms`. */
export async function nextEvent(it: AsyncGenerator<ReceiveResponse>, ms = 5000): Promise<ReceiveResponse> {
  const r = await Promise.race([it.next(), new Promise<undefined>((res) => setTimeout(res, ms))]);
  if (!r || r.done) throw new Error("no event from the stream");
  return r.value;
}

/** A mailbox record from device 1 of account "sender", entry [n], `bodyBytes` of body (for mail stored by hand). */
export function senderRecord(n: number, bodyBytes = 0): Uint8Array {
  return encodeRecord({
    messageId: randomBytes(16),
    senderAccountId: "sender",
    senderDeviceId: 1,
    timestampMs: 1_700_000_000_000 + n,
    entry: new Uint8Array([n]),
    ephemeral: false,
    body: new Uint8Array(bodyBytes).fill(n),
  });
}

/**
 * A stream at the head of a fresh device's (empty) mailbox on `server`'s instance, driven by
 * hand: it waits between messages like a stream whose client has not asked for more. Ended
 * when the test finishes.
 */
export async function openDrainedStreamOn(server: RunningServer, window = 16) {
  const ctx = server.context;
  const mailboxes = new Mailboxes(ctx.nats, ctx.layout.partitions);
  const deps: ReceiveStreamDeps = { nats: ctx.nats, mailboxes, receivers: ctx.layout.buckets.receivers, log: ctx.log, now: Date.now };
  const device = { accountId: `acct${randomBytes(6).toString("hex")}`, deviceId: 1 };
  const hub = new ReceiveHub(ctx.nats, Date.now);
  const stream = new ReceiveStream(deps, device, `stream-${randomBytes(4).toString("hex")}`, 0, window);
  hub.add(stream);
  const abort = new AbortController();
  const it = stream.run(abort.signal);
  onTestFinished(async () => {
    abort.abort();
    await it.return(undefined);
    hub.close();
  });
  expect((await nextEvent(it)).event.case).toBe("drained");
  const loc = mailboxes.locate(device);
  return {
    ctx,
    mailboxes,
    device,
    hub,
    stream,
    it,
    caller: { accountId: device.accountId, deviceId: device.deviceId } as AuthenticatedDevice,
    /** Stores a record with no hint (mail whose hint has not reached this stream). */
    store: async (r: Uint8Array) => (await mailboxes.append(loc, r, randomBytes(11).toString("hex"))).seq,
    stored: () => mailboxSequences(ctx.nats, ctx.layout.partitions, device),
  };
}
