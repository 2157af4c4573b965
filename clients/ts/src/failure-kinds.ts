/**
 * Which failures say nothing about the item being processed: the server or the network is
 * unreachable, or the local disk failed. The outbox and the receive loop retry those without
 * limit (with backoff), and count every other failure against the item, so one poisonous
 * message or unsendable item cannot stall everything behind it forever.
 */
import { Code, ConnectError } from "@connectrpc/connect";

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
