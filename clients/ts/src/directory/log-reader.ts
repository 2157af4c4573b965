/**
 * Reads the key transparency log's leaves in pages (GetLogEntries) and extends a compact
 * frontier with each, for the own-account monitor and the audit, which then compare the
 * frontier's root with a signed head.
 */
import type { LogEntry } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { ServerApi } from "../transport/server-api.js";
import { transparencyLeaf } from "./labels.js";
import { appendToFrontier, leafHash, type Frontier } from "./merkle-proofs.js";

/**
 * Leaves [start, end): each goes into `frontier` and to `onLeaf` with its index; `onPage`
 * after each page with how far it got. Returns how far it got: `end`, or less when the
 * server answered a page with no leaves.
 */
export async function readLogLeaves(
  api: ServerApi,
  p: CryptoProvider,
  frontier: Frontier,
  start: number,
  end: number,
  pageSize: number,
  onLeaf: (entry: LogEntry, index: number) => void,
  onPage?: (at: number) => void,
): Promise<number> {
  let at = start;
  while (at < end) {
    const { entries } = await api.open.getLogEntries({ start: BigInt(at), count: Math.min(pageSize, end - at) });
    if (entries.length === 0) return at;
    for (const e of entries.slice(0, end - at)) {
      onLeaf(e, at);
      appendToFrontier(p, frontier, leafHash(p, transparencyLeaf(e.accountIndex, e.version, e.listHash)));
      at++;
    }
    onPage?.(at);
  }
  return at;
}
