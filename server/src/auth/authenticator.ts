/**
 * Turns the `authorization: Bearer <token>` header of a call into the device it acts for,
 * or a precise UNAUTHENTICATED error. The device must still be in its account's current
 * device list, so revocation locks a device out at once, not when its token expires.
 */
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { TokenSigner } from "./tokens.js";
import { storeOp } from "../nats/store-errors.js";
import type { DeviceRef } from "../device-address.js";

export interface AuthenticatedDevice extends DeviceRef {
  /** When the token the call presented expires (long-lived streams end then). */
  expiresAtMs?: number;
}

/** Answers whether a device is currently listed in its account (the directory implements it). */
export interface DeviceStatus {
  isActive(accountId: string, deviceId: number): Promise<boolean>;
}

export class Authenticator {
  constructor(
    private readonly tokens: TokenSigner,
    private readonly devices: DeviceStatus,
  ) {}

  async require(ctx: HandlerContext): Promise<AuthenticatedDevice> {
    return this.requireHeader(ctx.requestHeader.get("authorization") ?? undefined);
  }

  /** require() from the header itself (also for calls served outside connect-node: delivery/native-delivery.ts). */
  async requireHeader(authorization: string | undefined): Promise<AuthenticatedDevice> {
    return this.listed(checkBearer(authorization, this.tokens));
  }

  /** The device of a checked token, if it is still in its account's current list; revoked() otherwise. */
  async listed(claims: AuthenticatedDevice): Promise<AuthenticatedDevice> {
    if (!(await storeOp("the device-list check", () => this.devices.isActive(claims.accountId, claims.deviceId)))) throw revoked(claims);
    return claims;
  }

  /**
   * The token check alone (signature, expiry), no store read. A caller that uses it must
   * itself check that the device is still listed, in a read made after the call arrived
   * (Send does, in the device-list read it makes anyway), and answer revoked() if not.
   */
  token(ctx: HandlerContext): AuthenticatedDevice {
    return checkBearer(ctx.requestHeader.get("authorization"), this.tokens);
  }

  /** token() from the header itself. */
  bearer(authorization: string | undefined): AuthenticatedDevice {
    return checkBearer(authorization, this.tokens);
  }
}

/**
 * The device an `authorization` header's bearer token acts for (signature and expiry only),
 * or the precise UNAUTHENTICATED error. Also used before a call's body is read (pre-auth-gate.ts).
 */
export function checkBearer(header: string | null | undefined, tokens: TokenSigner): AuthenticatedDevice {
  if (!header) throw new ConnectError("missing authorization header (expected 'Bearer <token>' from Authenticate)", Code.Unauthenticated);
  // The scheme is case-insensitive (RFC 9110 11.1); one space, then the token.
  const m = /^bearer (\S+)$/i.exec(header);
  if (!m) throw new ConnectError("authorization header must be 'Bearer <token>'", Code.Unauthenticated);
  const claims = tokens.verify(m[1]);
  if (claims === "malformed") throw new ConnectError("malformed token", Code.Unauthenticated);
  if (claims === "bad-signature") throw new ConnectError("token signature is invalid", Code.Unauthenticated);
  if (claims === "expired") throw new ConnectError("token expired; authenticate again", Code.Unauthenticated);
  return { accountId: claims.accountId, deviceId: claims.deviceId, expiresAtMs: claims.expiresAtMs };
}

/** The answer to a valid token of a device no longer in its account's current list. */
export function revoked(d: AuthenticatedDevice): ConnectError {
  return new ConnectError(`device ${d.accountId}/${d.deviceId} is not in its account's device list (revoked)`, Code.Unauthenticated);
}

/** Longest delay setTimeout takes (~24.8 days); a token living longer gets no timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs `fn` when the device's token expires (long-lived streams end then: the client
 * authenticates again and reopens). Returns the cancel function.
 */
export function atTokenExpiry(device: AuthenticatedDevice, now: () => number, fn: () => void): () => void {
  if (device.expiresAtMs === undefined) return () => {};
  const delay = Math.max(0, device.expiresAtMs - now());
  if (delay > MAX_TIMER_MS) return () => {};
  const t = setTimeout(fn, delay);
  t.unref();
  return () => clearTimeout(t);
}
