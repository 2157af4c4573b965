/**
 * Cross-cutting call handling: one log line per call (procedure, code, duration, sizes:
 * never contents), its metrics and trace span, NATS outages turned into UNAVAILABLE (retry)
 * and other unexpected errors into INTERNAL, without leaking details.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "./logger.js";
import { noMetrics, protocolOf, type Metrics } from "./observability/metrics.js";
import { noTracing, type Tracing } from "./observability/tracing.js";
import { isTransientStoreError, needsStore, storeDisconnected, unavailable } from "./nats/store-errors.js";

export function callLogInterceptor(
  log: Logger,
  now: () => number = Date.now,
  metrics: Metrics = noMetrics,
  tracing: Tracing = noTracing,
  /** False while this instance is disconnected from NATS: calls that need the store fail at once. */
  storeUp: () => boolean = () => true,
): Interceptor {
  return (next) => (req) => tracing.rpc(`${req.service.typeName}/${req.method.name}`, req.header, () => observe(next, req, log, now, metrics, storeUp));
}

/** One call through connect-node: logged, counted, its failure mapped (failedCall). */
async function observe(
  next: Parameters<Interceptor>[0],
  req: Parameters<Parameters<Interceptor>[0]>[0],
  log: Logger,
  now: () => number,
  metrics: Metrics,
  storeUp: () => boolean,
) {
  const start = now();
  const procedure = req.method.name;
  const protocol = protocolOf(req.header.get("content-type"));
  const done = (code: string) => metrics.call(procedure, protocol, code, (now() - start) / 1000);
  try {
    if (!storeUp() && needsStore(req.service.typeName, procedure)) throw storeDisconnected();
    const res = await next(req);
    if (!res.stream) {
      log.debug("call", { procedure, code: "ok", ms: now() - start });
      done("ok");
      return res;
    }
    // A stream is done when its last message is out (or it failed).
    return { ...res, message: observed(res.message, done) };
  } catch (err) {
    // The client hung up before its request was read in full (reset, closed socket): its
    // business, not a server error.
    if (!(err instanceof ConnectError) && (req.signal.aborted || (err as NodeJS.ErrnoException)?.code === "ERR_STREAM_PREMATURE_CLOSE")) {
      log.debug("call", { procedure, code: "canceled", reason: "client went away", ms: now() - start });
      done("canceled");
      throw new ConnectError("the client closed the request", Code.Canceled);
    }
    const e = failedCall(err, procedure, log, now() - start);
    done(codeToString(e.code));
    throw e;
  }
}

async function* observed<T>(messages: AsyncIterable<T>, done: (code: string) => void): AsyncIterable<T> {
  let code = "canceled";
  try {
    yield* messages;
    code = "ok";
  } catch (err) {
    code = err instanceof ConnectError ? codeToString(err.code) : "internal";
    throw err;
  } finally {
    done(code);
  }
}

/**
 * The answer to a call that failed, logged once: its own ConnectError, UNAVAILABLE for NATS
 * briefly unreachable, INTERNAL (with the error in the log only) for anything else. Also used
 * by calls served outside connect-node (delivery/native-delivery.ts).
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
