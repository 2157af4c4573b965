/**
 * Cross-cutting call handling: one log line per call (procedure, code, duration, sizes:
 * never contents), NATS outages turned into UNAVAILABLE (retry) and other unexpected errors
 * into INTERNAL, without leaking details.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "./logger.js";
import { isTransientStoreError, unavailable } from "./nats/store-errors.js";

export function callLogInterceptor(log: Logger, now: () => number = Date.now): Interceptor {
  return (next) => async (req) => {
    const start = now();
    const procedure = req.method.name;
    try {
      const res = await next(req);
      if (!res.stream) log.debug("call", { procedure, code: "ok", ms: now() - start });
      return res;
    } catch (err) {
      // The client hung up before its request was read in full (reset, closed socket): its
      // business, not a server error.
      if (!(err instanceof ConnectError) && (req.signal.aborted || (err as NodeJS.ErrnoException)?.code === "ERR_STREAM_PREMATURE_CLOSE")) {
        log.debug("call", { procedure, code: "canceled", reason: "client went away", ms: now() - start });
        throw new ConnectError("the client closed the request", Code.Canceled);
      }
      throw failedCall(err, procedure, log, now() - start);
    }
  };
}

/**
 * The answer to a call that failed, logged once: its own ConnectError, UNAVAILABLE for NATS
 * briefly unreachable, INTERNAL (with the error in the log only) for anything else. Also used
 * by calls served outside connect-node (delivery/lean-receive.ts).
 */
export function failedCall(err: unknown, procedure: string, log: Logger, ms: number): ConnectError {
  if (err instanceof ConnectError) {
    log.info("call", { procedure, code: Code[err.code], reason: err.rawMessage, ms });
    return err;
  }
  // NATS briefly unreachable (restart, election): the caller should retry, say so.
  if (isTransientStoreError(err)) {
    log.warn("call", { procedure, code: "unavailable", reason: (err as Error).name, ms });
    return unavailable("the call", err);
  }
  // A bug: log the error, tell the caller only what it can act on.
  log.error("call failed", { procedure, error: String((err as Error)?.stack ?? err), ms });
  return new ConnectError("internal error; retry later", Code.Internal);
}
