/**
 * SendSealed's gate (sealed sender): the caller's address is limited first (cheap, and it
 * bounds what refused callers cost), then the access key must open the account, and only then
 * is the account's own limit taken, so callers without a key cannot use up a recipient's
 * sealed mail. What passes is stored by Sender.sendSealed, with no sender.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { SendSealedResponseSchema, type SendSealedRequest, type SendSealedResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { callerLimitKey } from "../caller-address.js";
import { sealedSendAllowed, type SealedAccess } from "../directory/sealed-access.js";
import { storeOp } from "../nats/store-errors.js";
import type { Metrics } from "../observability/metrics.js";
import { RateLimiter } from "../rate-limit.js";
import type { DeviceLists } from "./device-lists.js";
import type { DeliveryLimits } from "./limits.js";
import type { Sender } from "./send.js";
import { checkAccountId, exhausted, invalid } from "./validation.js";

/** Access keys are 16 bytes (SetSealedAccess stores their SHA-256). */
export const ACCESS_KEY_BYTES = 16;

export interface SealedSendDeps {
  limits: DeliveryLimits;
  lists: DeviceLists;
  access: SealedAccess;
  sender: Sender;
  metrics: Metrics;
  now: () => number;
}

export class SealedSendGate {
  private readonly perAccount: RateLimiter;
  private readonly perAddress: RateLimiter;

  constructor(private readonly d: SealedSendDeps) {
    this.perAccount = new RateLimiter(d.limits.sealedSendsPerAccountPerMinute, d.now);
    this.perAddress = new RateLimiter(d.limits.sealedSendsPerAddressPerMinute, d.now);
  }

  /** SendSealed for a caller at `callerAddress`. */
  async send(req: SendSealedRequest, callerAddress: string): Promise<SendSealedResponse> {
    const l = this.d.limits;
    const address = callerLimitKey(callerAddress);
    if (!this.perAddress.take(address)) {
      this.d.metrics.rejected("sealed_sends_per_address_per_minute");
      throw exhausted(
        `sealed send rate limit exceeded for this address: sealed_sends_per_address_per_minute is ${l.sealedSendsPerAddressPerMinute}; retry in ${this.perAddress.retryAfterSeconds(address)} s`,
      );
    }
    if (!req.send) throw invalid("send is required");
    checkAccountId("account_id", req.accountId);
    if (req.accessKey.length !== 0 && req.accessKey.length !== ACCESS_KEY_BYTES) {
      throw invalid(`access_key must be ${ACCESS_KEY_BYTES} bytes (or empty), got ${req.accessKey.length}`);
    }
    const [list, access] = await Promise.all([
      storeOp("the device-list lookup", () => this.d.lists.currentDeviceList(req.accountId)),
      storeOp("the sealed-access lookup", () => this.d.access.get(req.accountId)),
    ]);
    if (!list || !sealedSendAllowed(access, list.deviceIds, req.accessKey)) {
      this.d.metrics.rejected("sealed_access");
      throw new ConnectError(
        `sealed send refused: the access key does not open account ${req.accountId}'s mailboxes (or no device of it accepts sealed mail); send with Send instead`,
        Code.PermissionDenied,
      );
    }
    if (!this.perAccount.take(req.accountId)) {
      this.d.metrics.rejected("sealed_sends_per_account_per_minute");
      throw exhausted(
        `sealed send rate limit exceeded for account ${req.accountId}: sealed_sends_per_account_per_minute is ${l.sealedSendsPerAccountPerMinute}; retry in ${this.perAccount.retryAfterSeconds(req.accountId)} s`,
      );
    }
    const r = await this.d.sender.sendSealed(req.accountId, req.send, list);
    return create(SendSealedResponseSchema, { outcome: r.outcome });
  }

  /** Drops full buckets (the service's minute timer). */
  prune(): void {
    this.perAccount.prune();
    this.perAddress.prune();
  }
}
