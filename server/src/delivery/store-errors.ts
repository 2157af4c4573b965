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

/** Runs a store operation, turning NATS errors into UNAVAILABLE. */
export async function storeOp<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw unavailable(what, err);
  }
}
