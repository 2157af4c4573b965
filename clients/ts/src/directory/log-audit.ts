/**
 * An audit of the whole key transparency log (sealpost audit): reads every leaf, checks that
 * they make up the newest signed head, that the head carries the log key's signature, that no
 * (account, version) appears with two different lists, and that each account's versions
 * appear in order without gaps. Anyone can run it; no account is needed.
 */
import type { SignedTreeHead } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import { bytesEqual, toHex } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { ServerApi } from "../transport/server-api.js";
import { treeHeadSignedBytes } from "./labels.js";
import { frontierRoot, verifyConsistency, type Frontier } from "./merkle-proofs.js";
import { readLogLeaves } from "./log-reader.js";

export interface AuditReport {
  logKey: Uint8Array;
  head: SignedTreeHead;
  leaves: number;
  accounts: number;
  /** What is wrong; empty when the log checks out. */
  problems: string[];
}

export interface AuditOptions {
  /** The log key to require (else the one the server names is taken and reported). */
  logKey?: Uint8Array;
  /** A head seen before (e.g. by a device): the new one must extend it. */
  previous?: { treeSize: number; rootHash: Uint8Array };
  pageSize?: number;
  onProgress?: (read: number, of: number) => void;
}

export async function auditLog(api: ServerApi, p: CryptoProvider, opts: AuditOptions = {}): Promise<AuditReport> {
  const { treeHead: head, logKey: served } = await api.open.getTreeHead({});
  if (!head) throw new Error("GetTreeHead returned no tree head");
  const logKey = opts.logKey ?? served;
  const problems: string[] = [];
  if (opts.logKey && !bytesEqual(opts.logKey, served)) problems.push(`the server names log key ${toHex(served)}, not the expected ${toHex(opts.logKey)}`);
  if (!(await p.ed25519Verify(logKey, treeHeadSignedBytes(head.treeSize, head.rootHash, head.timestampMs), head.signature))) {
    problems.push("the newest tree head does not carry the log key's signature");
  }
  const size = Number(head.treeSize);
  if (opts.previous && opts.previous.treeSize > 0) {
    const prev = opts.previous;
    if (prev.treeSize > size) problems.push(`the log shrank: ${size} leaves now, ${prev.treeSize} seen before`);
    else {
      const proof = prev.treeSize === size ? [] : (await api.open.getConsistencyProof({ firstSize: BigInt(prev.treeSize), secondSize: BigInt(size) })).proof;
      if (!verifyConsistency(p, prev.treeSize, size, prev.rootHash, head.rootHash, proof))
        problems.push(`the log is not an extension of the one seen before at ${prev.treeSize} leaves`);
    }
  }
  const frontier: Frontier = [];
  const versions = new Map<string, { last: bigint; hashes: Map<bigint, string> }>();
  const pageSize = opts.pageSize ?? 1000;
  const read = await readLogLeaves(
    api,
    p,
    frontier,
    0,
    size,
    pageSize,
    (e, index) => {
      const account = toHex(e.accountIndex);
      const seen = versions.get(account) ?? { last: 0n, hashes: new Map() };
      versions.set(account, seen);
      const before = seen.hashes.get(e.version);
      const hash = toHex(e.listHash);
      if (before !== undefined) {
        if (before !== hash) problems.push(`leaf ${index}: account ${account.slice(0, 16)}… version ${e.version} appears with two different lists`);
      } else {
        if (e.version !== seen.last + 1n) problems.push(`leaf ${index}: account ${account.slice(0, 16)}… jumps from version ${seen.last} to ${e.version}`);
        seen.hashes.set(e.version, hash);
        if (e.version > seen.last) seen.last = e.version;
      }
    },
    (at) => opts.onProgress?.(at, size),
  );
  if (read < size) problems.push(`the server returned no leaves at ${read} of ${size}`);
  if (!bytesEqual(frontierRoot(p, frontier), head.rootHash)) problems.push(`the log's ${size} leaves do not make up its signed root`);
  return { logKey, head, leaves: size, accounts: versions.size, problems };
}
