/**
 * DeliveryService: Send, the per-device mailbox stream, Ack, attachments. The wiring only;
 * each concept lives in its own file (send, receive-stream, receive-hub, ack, attachments).
 * Algorithms and the reasoning behind them: docs/ARCHITECTURE.md, "Delivery".
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  GetLimitsResponseSchema,
  type DeliveryService,
  type SendSealedRequest,
  type SendSealedResponse,
  type ReceiveRequest,
  type ReceiveResponse,
  type SessionRequest,
  type SessionResponse,
  type SendRequest,
  type AckRequest,
  type SendResponse,
  type AckResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { AuthenticatedDevice, Authenticator } from "../auth/authenticator.js";
import type { ServerContext } from "../server-context.js";
import type { Directory } from "../directory/service.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { Acker } from "./ack.js";
import { Attachments } from "./attachments.js";
import type { DeviceLists } from "./device-lists.js";
import { defaultLimits, limitsMessage, type DeliveryLimits } from "./limits.js";
import { StreamReads } from "../nats/stream-reads.js";
import { READ_TIMEOUT_MS } from "../nats/publisher.js";
import { bucketNames } from "../nats/layout.js";
import { Mailboxes } from "./mailbox.js";
import { RateLimiter } from "../rate-limit.js";
import { ReceiveHub } from "./receive-hub.js";
import { ReceiveStream } from "./receive-stream.js";
import { Sender } from "./send.js";
import { runSession } from "./session.js";
import { exhausted, invalid } from "./validation.js";
import { callerAddressKey } from "../caller-address.js";
import { SealedSendGate } from "./send-sealed.js";
import type { StopSignal } from "./call-stop.js";

export interface Delivery {
  impl: Partial<ServiceImpl<typeof DeliveryService>>;
  /** The caller's mailbox as Receive events (served natively by native-delivery.ts as well). */
  mailbox(device: AuthenticatedDevice, req: ReceiveRequest, signal: StopSignal): AsyncGenerator<ReceiveResponse>;
  /** The caller's Session over its requests (served natively by native-delivery.ts as well). */
  session(device: AuthenticatedDevice, requests: AsyncIterable<SessionRequest>, signal: StopSignal): AsyncGenerator<SessionResponse>;
  /** Send and Ack as the unary RPCs run them, for the device of a checked token (they check it is still listed). */
  send(token: AuthenticatedDevice, req: SendRequest): Promise<SendResponse>;
  ack(token: AuthenticatedDevice, req: AckRequest): Promise<AckResponse>;
  /** SendSealed as the unary RPC runs it, for a caller at `callerAddress` (no token). */
  sendSealed(req: SendSealedRequest, callerAddress: string): Promise<SendSealedResponse>;
  /** Receive streams open on this instance. */
  readonly openStreams: number;
  close(): Promise<void>;
}

export interface DeliveryOptions {
  limits?: Partial<DeliveryLimits>;
  /** Override the directory's device lists (unit tests). */
  deviceLists?: DeviceLists;
  /** How often every stream re-checks its mailbox without hints. */
  checkIntervalMs?: number;
  /** Admission control: stores in flight before Sends are shed (send.ts MAX_STORES_IN_FLIGHT). */
  maxStoresInFlight?: number;
  /** Widest span of sequences one Ack purges instead of deleting each (ack.ts PURGE_MAX_SPAN). */
  purgeMaxSpan?: number;
}

export async function createDelivery(ctx: ServerContext, auth: Authenticator, directory: Directory, options: DeliveryOptions = {}): Promise<Delivery> {
  const limits: DeliveryLimits = { ...defaultLimits, ...options.limits };
  const lists: DeviceLists = options.deviceLists ?? directory;
  const reads = await jetstreamManager(ctx.nats.nc, { timeout: READ_TIMEOUT_MS, checkAPI: false });
  const mailboxes = new Mailboxes(ctx.nats, ctx.layout.partitions, reads, ctx.layout.replicas > 1, ctx.nats.publisher, ctx.now);
  const rate = new RateLimiter(limits.sendsPerMinute, ctx.now);
  const attachmentRate = new RateLimiter(limits.attachmentsPerMinute, ctx.now);
  const streamOpens = new RateLimiter(limits.streamOpensPerMinute, ctx.now);
  const pruneTimer = setInterval(() => {
    rate.prune();
    sealedGate.prune();
    attachmentRate.prune();
    streamOpens.prune();
  }, 60_000);
  pruneTimer.unref();
  const hub = new ReceiveHub(ctx.nats, ctx.now, options.checkIntervalMs);
  const sender = new Sender({
    mailboxes,
    sends: ctx.layout.buckets.sends,
    publisher: ctx.nats.publisher,
    limits,
    rate,
    deviceLists: lists,
    now: ctx.now,
    log: ctx.log,
    maxStoresInFlight: options.maxStoresInFlight,
    metrics: ctx.metrics,
    traceparent: ctx.tracing.enabled ? () => ctx.tracing.currentTraceparent() : undefined,
    pushLocal: (d, seq, record, traceparent) => {
      let owned = false;
      for (const s of hub.streamsOf(d.accountId, d.deviceId)) {
        owned ||= s.owner;
        s.offer(seq, record, traceparent);
      }
      return owned;
    },
  });
  const sealedGate = new SealedSendGate({ limits, lists, access: directory.sealedAccess, sender, metrics: ctx.metrics, now: ctx.now });
  const acker = new Acker(mailboxes, hub, limits, ctx.metrics, options.purgeMaxSpan);
  const attachments = new Attachments({
    nats: ctx.nats,
    reads: new StreamReads(ctx.nats.jsm, ctx.layout.replicas > 1),
    meta: ctx.layout.buckets.attachments,
    limits,
    rate: attachmentRate,
    now: ctx.now,
    random: ctx.random,
    metrics: ctx.metrics,
  });
  const streamDeps = {
    nats: ctx.nats,
    mailboxes,
    receivers: ctx.layout.buckets.receivers,
    // The KV put as one coalesced core publish (publisher.ts): the PubAck's sequence is the revision.
    claim: async (key: string, value: Uint8Array) => (await ctx.nats.publisher.publish(`$KV.${bucketNames.receivers}.${key}`, value)).seq,
    log: ctx.log,
    now: ctx.now,
    metrics: ctx.metrics,
    tracing: ctx.tracing,
  };

  // Revocation: drop the mailbox, then end the device's streams on every instance (the
  // signal goes to the device's subject, which only instances holding its stream listen to).
  lists.onDeviceRevoked?.(async (accountId, deviceId) => {
    const device = { accountId, deviceId };
    await mailboxes.purge(device);
    for (const s of hub.streamsOf(accountId, deviceId)) s.end("revoked");
    mailboxes.signal(device, { kind: "revoked" });
  });
  // Safety net on every instance (the revoked signal is a hint): streams of devices no longer listed end.
  lists.onDeviceListChanged?.((accountId, current) => {
    for (const s of hub.streamsOfAccount(accountId)) if (!current.deviceIds.includes(s.device.deviceId)) s.end("revoked");
  });

  // Stream ids need only be unique across instances (takeover compares them): a random prefix
  // per instance and a counter, instead of random bytes per stream (a locked RNG call each,
  // ~2% of the server's time in a reconnect storm).
  const streamIdPrefix = `${Buffer.from(ctx.random(9)).toString("base64url")}.`;
  let streamsOpened = 0;

  /**
   * The caller's mailbox as a stream of events (Receive, and the mailbox of a Session). A plain
   * function that checks the request and hands out the stream's own generator: a generator
   * frame of its own here would live as long as the stream (~0.5 KiB per idle stream).
   */
  function mailbox(device: AuthenticatedDevice, req: ReceiveRequest, signal: StopSignal): AsyncGenerator<ReceiveResponse> {
    const key = `${device.accountId}/${device.deviceId}`;
    if (!streamOpens.take(key)) {
      ctx.metrics.rejected("mailbox_streams_per_minute");
      throw exhausted(
        `stream rate limit exceeded for device ${key}: at most ${limits.streamOpensPerMinute} mailbox streams (Receive, or receive on a Session) per minute; retry in ${streamOpens.retryAfterSeconds(key)} s`,
      );
    }
    if (req.afterSequence > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`after_sequence ${req.afterSequence} is out of range`);
    if (req.maxInFlight > limits.maxInFlight) {
      throw invalid(`max_in_flight ${req.maxInFlight} exceeds the server's max_in_flight ${limits.maxInFlight} (0 means the server maximum)`);
    }
    const window = req.maxInFlight || limits.maxInFlight;
    const streamId = `${streamIdPrefix}${(++streamsOpened).toString(36)}`;
    const stream = new ReceiveStream(streamDeps, device, streamId, Number(req.afterSequence), window, () => hub.remove(stream));
    // A stream lives no longer than the token that opened it (the client re-authenticates).
    stream.expiresAtMs = device.expiresAtMs;
    hub.add(stream);
    return stream.run(signal);
  }

  // The token is checked by the caller; the "still listed" check inside Send from its own device-list read.
  const sendAs = async (token: AuthenticatedDevice, req: SendRequest) => sender.send(token, req, { checkSenderListed: true });
  const ackAs = async (token: AuthenticatedDevice, req: AckRequest) => acker.ack(await auth.listed(token), req.sequences);

  const sendSealed = (req: SendSealedRequest, callerAddress: string) => sealedGate.send(req, callerAddress);

  const sessionDeps = {
    send: (d: AuthenticatedDevice, req: SendRequest) => sender.send(d, req, { checkSenderListed: true }),
    ack: (d: AuthenticatedDevice, req: AckRequest) => acker.ack(d, req.sequences),
    receive: mailbox,
    maxInFlight: limits.maxInFlight,
    now: ctx.now,
    metrics: ctx.metrics,
  };
  const session = (device: AuthenticatedDevice, requests: AsyncIterable<SessionRequest>, signal: StopSignal) =>
    runSession(sessionDeps, device, requests, signal);

  const impl: Partial<ServiceImpl<typeof DeliveryService>> = {
    getLimits: () => create(GetLimitsResponseSchema, { limits: limitsMessage(limits, directory.limits) }),

    send: (req, hctx) => sendAs(auth.token(hctx), req),

    sendSealed: (req, hctx) => sendSealed(req, hctx.values.get(callerAddressKey)),

    async *receive(req, hctx) {
      // hctx.signal also aborts on instance shutdown (connect links it to shutdownSignal).
      yield* mailbox(await auth.require(hctx), req, hctx.signal);
    },

    ack: (req, hctx) => ackAs(auth.token(hctx), req),

    async *session(requests, hctx) {
      yield* session(await auth.require(hctx), requests, hctx.signal);
    },

    createAttachment: async (req, hctx) => attachments.create(await auth.require(hctx), req),
    putAttachmentChunk: async (req, hctx) => attachments.putChunk(await auth.require(hctx), req),
    completeAttachment: async (req, hctx) => attachments.complete(await auth.require(hctx), req.attachmentId),
    async *downloadAttachment(req, hctx) {
      await auth.require(hctx);
      yield* attachments.download(req.attachmentId, req.startChunk);
    },
  };

  return {
    impl,
    mailbox,
    session,
    send: sendAs,
    ack: ackAs,
    sendSealed,
    get openStreams() {
      return hub.size;
    },
    close: async () => {
      clearInterval(pruneTimer);
      hub.close();
    },
  };
}
