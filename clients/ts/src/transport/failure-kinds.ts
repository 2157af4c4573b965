/**
 * The one classification of failures, used wherever something is retried (outbox, receive
 * loop, receive pipeline, history transfer, linking):
 *
 * - "environment": says nothing about the item being processed: the server or the network is
 *   unreachable, the server is overloaded, or the local disk failed. Retried without limit
 *   (with backoff), and everything else waits too.
 * - "item": worth retrying, but it may be the item's fault (e.g. device lists that keep
 *   changing, FAILED_PRECONDITION): retried a bounded number of times, then the item fails,
 *   so one poisonous item cannot stall everything behind it forever.
 * - "permanent": the request itself was refused (invalid, not found, denied, too big), or a
 *   local error says it never will work (crypto, MessengerError): never retried.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { messengerErrorOf } from "../core/messenger-errors.js";
import { SealpostCryptoError } from "../crypto/errors.js";

export type FailureKind = "environment" | "item" | "permanent";

export function failureKind(err: unknown): FailureKind {
  if (isEnvironmentFailure(err)) return "environment";
  return isTransient(err) ? "item" : "permanent";
}

/** True for failures worth retrying later ("environment" or "item"): not the request's own fault. */
export function isTransient(err: unknown): boolean {
  if (messengerErrorOf(err)) return false;
  if (err instanceof SealpostCryptoError) return false;
  if (err instanceof ConnectError) {
    switch (err.code) {
      case Code.InvalidArgument:
      case Code.NotFound:
      case Code.PermissionDenied:
      case Code.AlreadyExists:
      case Code.OutOfRange:
      case Code.Unimplemented:
        return false;
      case Code.ResourceExhausted:
        return isRetryableExhaustion(err);
      default:
        return true;
    }
  }
  return true;
}

/** True when `err` is about the environment (network, server availability, disk), not the item. */
export function isEnvironmentFailure(err: unknown): boolean {
  if (err instanceof ConnectError) {
    switch (err.code) {
      case Code.Unavailable:
      case Code.DeadlineExceeded:
      case Code.Canceled:
      case Code.Unauthenticated:
        return true;
      case Code.ResourceExhausted:
        return isRetryableExhaustion(err);
      default:
        return false;
    }
  }
  // Node system errors (ENOSPC, EIO, EACCES, ECONNREFUSED...) carry a string code and a syscall.
  const e = err as { code?: unknown; syscall?: unknown } | undefined;
  return typeof e?.code === "string" && typeof e.syscall === "string";
}

/** The header an overloaded server sets on RESOURCE_EXHAUSTED: retry after this many ms. */
export const RETRY_AFTER_HEADER = "sealpost-retry-after-ms";

/** RESOURCE_EXHAUSTED that passes with time (a rate limit, an overloaded server), not a size limit. */
export function isRetryableExhaustion(err: ConnectError): boolean {
  return /rate limit/i.test(err.rawMessage) || err.metadata.has(RETRY_AFTER_HEADER);
}
