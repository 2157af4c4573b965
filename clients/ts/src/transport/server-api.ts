/**
 * The generated Connect clients of one server, plus this device's bearer token: fetched by
 * signing a GetAuthChallenge nonce (Authenticate), refreshed shortly before it expires, and
 * fetched again once when a unary call answers UNAUTHENTICATED (expired or rotated secret).
 * A device that was revoked cannot authenticate any more: that surfaces as
 * MessengerError("device_revoked").
 */
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { context, propagation } from "@opentelemetry/api";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { authSignedBytes } from "../directory/labels.js";
import type { DeviceRef } from "../store/conversation-store.js";
import { MessengerError } from "../core/messenger-errors.js";
import { DeliveryChannel } from "./delivery-channel.js";
import { CALL_DEADLINE_MS, unaryDeadline } from "./call-deadline.js";
import { defaultTransport, defaultTransportHasBidi } from "#platform";

/** Refresh a token this long before it expires. */
const REFRESH_MARGIN_MS = 60_000;

export type TransportFactory = (baseUrl: string, interceptors: Interceptor[]) => Transport;

/** The platform's transport: Connect over HTTP/2 on Node, Connect over fetch in a browser. */
export { defaultTransport };

export interface ServerApiOptions {
  baseUrl: string;
  provider: CryptoProvider;
  now: () => number;
  transport?: TransportFactory;
  /**
   * Send and Ack over one Session stream (delivery-channel.ts). Default: on with the default
   * transport where it carries bidirectional streams (Connect over HTTP/2 on Node; not fetch in
   * a browser), off with a custom one unless it carries them and this says so.
   */
  session?: boolean;
  /** How long a call may go unanswered before it fails with DEADLINE_EXCEEDED (call-deadline.ts). */
  callDeadlineMs?: number;
}

export class ServerApi {
  /** Unauthenticated calls: CreateAccount, GetAuthChallenge, Authenticate, GetDeviceList, GetLimits. */
  readonly open: Client<typeof DirectoryService>;
  readonly openDelivery: Client<typeof DeliveryService>;
  /** Calls as this device (bearer token attached and refreshed). */
  readonly directory: Client<typeof DirectoryService>;
  readonly delivery: Client<typeof DeliveryService>;
  /** Send and Ack, pipelined on a Session stream where the transport allows. */
  readonly channel: DeliveryChannel;
  /**
   * SendSealed: no token, no trace context, and a transport of its own (on Node its own
   * connection), so nothing in the call ties it to this device's other calls.
   */
  readonly sealed: Client<typeof DeliveryService>;

  private device?: DeviceRef;
  private signingSeed?: Uint8Array;
  private current?: { token: string; expiresAtMs: number };
  private pending?: Promise<string>;

  constructor(private readonly opts: ServerApiOptions) {
    const make = opts.transport ?? defaultTransport;
    const deadlineMs = opts.callDeadlineMs ?? CALL_DEADLINE_MS;
    const deadline = unaryDeadline(deadlineMs);
    const plain = make(opts.baseUrl, [deadline, traceContext]);
    this.open = createClient(DirectoryService, plain);
    this.openDelivery = createClient(DeliveryService, plain);
    const authed = make(opts.baseUrl, [deadline, traceContext, this.authInterceptor]);
    this.directory = createClient(DirectoryService, authed);
    this.delivery = createClient(DeliveryService, authed);
    this.channel = new DeliveryChannel(this.delivery, opts.session ?? (!opts.transport && defaultTransportHasBidi), deadlineMs);
    this.sealed = createClient(DeliveryService, make(opts.baseUrl, [deadline]));
  }

  get baseUrl(): string {
    return this.opts.baseUrl;
  }

  /** Sets the device this API acts for (its private signing seed proves it). */
  setDevice(device: DeviceRef, signingSeed: Uint8Array): void {
    this.device = device;
    this.signingSeed = signingSeed;
    this.current = undefined;
  }

  /** Forgets the token (the next call authenticates again). */
  invalidate(): void {
    this.current = undefined;
  }

  /** A valid token, authenticating when there is none or it is about to expire. */
  async token(): Promise<string> {
    if (this.current && this.current.expiresAtMs - REFRESH_MARGIN_MS > this.opts.now()) return this.current.token;
    this.pending ??= this.authenticate().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async authenticate(): Promise<string> {
    const device = this.device;
    const seed = this.signingSeed;
    if (!device || !seed) throw new MessengerError("not_initialized", "no device to authenticate as");
    try {
      const { nonce } = await this.open.getAuthChallenge({ device });
      const signature = await this.opts.provider.ed25519Sign(seed, authSignedBytes(device.accountId, device.deviceId, nonce));
      const res = await this.open.authenticate({ device, nonce, signature });
      this.current = { token: res.token, expiresAtMs: Number(res.expiresAtMs) };
      return res.token;
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound) {
        throw new MessengerError("device_revoked", `device ${device.accountId}/${device.deviceId} is not in its account's device list`, { cause: err });
      }
      throw err;
    }
  }

  private readonly authInterceptor: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${await this.token()}`);
    try {
      return await next(req);
    } catch (err) {
      // Streams are re-opened by their owners; unary calls are retried once with a new token.
      if (req.stream || !(err instanceof ConnectError) || err.code !== Code.Unauthenticated) throw err;
      this.invalidate();
      req.header.set("authorization", `Bearer ${await this.token()}`);
      return next(req);
    }
  };
}

/**
 * W3C trace context of the app's active span (if the app runs an OpenTelemetry SDK) on every
 * call, so a server with tracing on continues the app's trace. Without an SDK the API's
 * propagator is a no-op and nothing is added.
 */
const traceContext: Interceptor = (next) => (req) => {
  propagation.inject(context.active(), req.header, { set: (h: Headers, k: string, v: string) => h.set(k, v) });
  return next(req);
};
