/**
 * The generated Connect clients of one server, plus this device's bearer token: fetched by
 * signing a GetAuthChallenge nonce (Authenticate), refreshed shortly before it expires, and
 * fetched again once when a unary call answers UNAUTHENTICATED (expired or rotated secret).
 * A device that was revoked cannot authenticate any more: that surfaces as
 * MessengerError("device_revoked").
 */
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { CryptoProvider } from "./crypto/provider.js";
import { authSignedBytes } from "./directory/labels.js";
import type { DeviceRef } from "./conversation-store.js";
import { MessengerError } from "./messenger-errors.js";
import { DeliveryChannel } from "./delivery-channel.js";

/** Refresh a token this long before it expires. */
const REFRESH_MARGIN_MS = 60_000;

export type TransportFactory = (baseUrl: string, interceptors: Interceptor[]) => Transport;

export const defaultTransport: TransportFactory = (baseUrl, interceptors) =>
  createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors });

export interface ServerApiOptions {
  baseUrl: string;
  provider: CryptoProvider;
  now: () => number;
  transport?: TransportFactory;
  /**
   * Send and Ack over one Session stream (delivery-channel.ts). Default: on with the default
   * transport (Connect over HTTP/2), off with a custom one unless it carries bidirectional
   * streams and this says so.
   */
  session?: boolean;
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

  private device?: DeviceRef;
  private signingSeed?: Uint8Array;
  private current?: { token: string; expiresAtMs: number };
  private pending?: Promise<string>;

  constructor(private readonly opts: ServerApiOptions) {
    const make = opts.transport ?? defaultTransport;
    const plain = make(opts.baseUrl, []);
    this.open = createClient(DirectoryService, plain);
    this.openDelivery = createClient(DeliveryService, plain);
    const authed = make(opts.baseUrl, [this.authInterceptor]);
    this.directory = createClient(DirectoryService, authed);
    this.delivery = createClient(DeliveryService, authed);
    this.channel = new DeliveryChannel(this.delivery, opts.session ?? !opts.transport);
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
      const signature = this.opts.provider.ed25519Sign(seed, authSignedBytes(device.accountId, device.deviceId, nonce));
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
