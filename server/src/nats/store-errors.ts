/**
 * NATS failures as ConnectErrors. A store that is briefly unreachable (nats-server restart,
 * leader election) is UNAVAILABLE: the client retries (Send with the same message_id).
 */
import { Code, ConnectError } from "@connectrpc/connect";

export function unavailable(what: string, err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const reason = err instanceof Error ? err.name || "error" : "error";
  return new ConnectError(`message store unavailable during ${what} (${reason}); retry`, Code.Unavailable, undefined, undefined, err);
}

/**
 * NATS client errors that mean "the store is briefly unreachable" (a node restarting, a
 * leader election, a reconnect): worth a retry, unlike a bug.
 */
const TRANSIENT = new Set([
  "TimeoutError",
  "NoResponders",
  "ClosedConnectionError",
  "DrainingConnectionError",
  "ConnectionError",
  "RequestError",
  "JetStreamNotEnabled",
  "JetStreamStatusError",
]);

export function isTransientStoreError(err: unknown): boolean {
  const e = err as { name?: string; status?: number } | undefined;
  if (!e?.name) return false;
  // JetStream API errors: 503 is "JetStream system temporarily unavailable" (no leader yet).
  return TRANSIENT.has(e.name) || (e.name === "JetStreamApiError" && e.status === 503);
}

/** Runs a store operation, turning NATS errors into UNAVAILABLE. */
export async function storeOp<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw unavailable(what, err);
  }
}

/**
 * The answer to a call that needs the store while this instance is disconnected from NATS:
 * at once, instead of after a 10 s JetStream timeout (clients retry elsewhere or later).
 */
export function storeDisconnected(): ConnectError {
  return new ConnectError("message store unavailable (this instance lost NATS); retry shortly", Code.Unavailable);
}

/** Every DirectoryService and DeliveryService call reads or writes the store, except GetLimits. */
export function needsStore(service: string, method: string): boolean {
  return (service === "sealpost.directory.v1.DirectoryService" || service === "sealpost.delivery.v1.DeliveryService") && method !== "GetLimits";
}
