/**
 * Every request to the server gets an answer or an error in bounded time. Connect sets no
 * deadline unless the caller passes one, so a call the server (or a proxy, or a half-dead
 * connection) never answers would hold up whatever waits on it (the outbox sends one item at
 * a time): a Send that says neither `sent` nor why. A call not answered within the deadline
 * fails with DEADLINE_EXCEEDED, which the outbox and the receive loop retry like any
 * unreachable server (a retried Send is marked `retry` and stored once).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** Far above any healthy answer (milliseconds), short enough that a stuck call does not stall a command. */
export const CALL_DEADLINE_MS = 20_000;

export function deadlineExceeded(ms: number): ConnectError {
  return new ConnectError(`no answer from the server within ${ms / 1000} s`, Code.DeadlineExceeded);
}

/**
 * A deadline for unary calls that have none of their own (streams are long-lived by design;
 * Session calls get theirs per request in delivery-channel.ts).
 */
export function unaryDeadline(ms = CALL_DEADLINE_MS): Interceptor {
  return (next) => async (req) => {
    if (req.stream || req.header.has("connect-timeout-ms") || req.header.has("grpc-timeout")) return next(req);
    const timer = new AbortController();
    const t = setTimeout(() => timer.abort(), ms);
    try {
      return await next({ ...req, signal: AbortSignal.any([req.signal, timer.signal]) });
    } catch (err) {
      if (timer.signal.aborted && !req.signal.aborted) throw deadlineExceeded(ms);
      throw err;
    } finally {
      clearTimeout(t);
    }
  };
}
