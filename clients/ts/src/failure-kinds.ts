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
        // Rate limits and an overloaded server (it says when to retry), not size limits.
        return /rate limit/i.test(err.rawMessage) || err.metadata.has("sealpost-retry-after-ms");
      default:
        return false;
    }
  }
  // Node system errors (ENOSPC, EIO, EACCES, ECONNREFUSED...) carry a string code and a syscall.
  const e = err as { code?: unknown; syscall?: unknown } | undefined;
  return typeof e?.code === "string" && typeof e.syscall === "string";
}
