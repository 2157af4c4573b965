/**
 * Key transparency checks for the conformance runner, written from PROTOCOL.md ("Key
 * transparency") and RFC 9162 independently of the TypeScript client and the server: what a
 * third-party client or auditor does with the server's answers.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { verifyEd25519 } from "./ed25519-rule.js";
import { fromBinary } from "@bufbuild/protobuf";
import { DeviceListSchema } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { asBytes, concat, utf8 } from "./bytes.js";

const H = (...parts: Uint8Array[]) => sha256(concat(...parts));
const node = (l: Uint8Array, r: Uint8Array) => H(Uint8Array.of(1), l, r);
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const u64 = (n: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n);
  return b;
};

interface Head {
  tree_size?: unknown;
  root_hash?: unknown;
  timestamp_ms?: unknown;
  signature?: unknown;
}

/** Undefined when the head carries the log key's signature; else what is wrong. */
export function treeHeadProblem(head: unknown, logKey: unknown): string | undefined {
  const h = head as Head | undefined;
  if (!h?.root_hash || !h.signature) return "the tree head has no root_hash or no signature";
  const signed = concat(
    utf8("sealpost.kt.tree-head.v1"),
    u64(BigInt(String(h.tree_size ?? 0))),
    asBytes(h.root_hash, "root_hash"),
    u64(BigInt(String(h.timestamp_ms ?? 0))),
  );
  return verifyEd25519(asBytes(h.signature, "signature"), signed, asBytes(logKey, "log_key"))
    ? undefined
    : "the tree head's signature does not verify with the log key";
}

/** RFC 9162 section 2.1.3.2. */
function includes(leafHash: Uint8Array, index: number, size: number, path: Uint8Array[], root: Uint8Array): boolean {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = node(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else r = node(r, p);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && same(r, root);
}

/** RFC 9162 section 2.1.4.2. */
function consistent(first: number, second: number, firstRoot: Uint8Array, secondRoot: Uint8Array, proof: Uint8Array[]): boolean {
  if (first === second) return proof.length === 0 && same(firstRoot, secondRoot);
  if (first === 0 || first > second || proof.length === 0) return first === 0 && proof.length === 0;
  const path = (first & (first - 1)) === 0 ? [firstRoot, ...proof] : proof;
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = node(c, fr);
      sr = node(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else sr = node(sr, c);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return same(fr, firstRoot) && same(sr, secondRoot) && sn === 0;
}

/** Undefined when a GetDeviceList answer's current list is proven in the log under `logKey`. */
export function logInclusionProblem(response: unknown, accountId: string, logKey: unknown): string | undefined {
  const res = response as { device_list?: { device_list?: unknown }; transparency?: { tree_head?: Head; leaf_index?: unknown; audit_path?: unknown[] } };
  const kt = res?.transparency;
  if (!res?.device_list?.device_list) return "the answer has no device list";
  if (!kt?.tree_head) return "the answer has no transparency (LogInclusion with a tree head)";
  const headProblem = treeHeadProblem(kt.tree_head, logKey);
  if (headProblem) return headProblem;
  const deviceList = asBytes(res.device_list.device_list, "device_list");
  const version = fromBinary(DeviceListSchema, deviceList).version;
  const leaf = concat(H(utf8("sealpost.kt.index.v1"), utf8(accountId)), u64(version), sha256(deviceList));
  const path = (kt.audit_path ?? []).map((p, i) => asBytes(p, `audit_path[${i}]`));
  const ok = includes(
    H(Uint8Array.of(0), leaf),
    Number(kt.leaf_index ?? 0),
    Number(kt.tree_head.tree_size ?? 0),
    path,
    asBytes(kt.tree_head.root_hash, "root_hash"),
  );
  return ok ? undefined : `version ${version} of ${accountId} is not in the log at leaf ${kt.leaf_index ?? 0} of ${kt.tree_head.tree_size}`;
}

/** Undefined when `proof` shows head `first` is a prefix of head `second`. */
export function logConsistencyProblem(first: unknown, second: unknown, proof: unknown): string | undefined {
  const a = first as Head;
  const b = second as Head;
  const steps = (Array.isArray(proof) ? proof : []).map((p, i) => asBytes(p, `proof[${i}]`));
  const ok = consistent(Number(a?.tree_size ?? 0), Number(b?.tree_size ?? 0), asBytes(a.root_hash, "first root"), asBytes(b.root_hash, "second root"), steps);
  return ok ? undefined : `the log at ${a?.tree_size} leaves is not proven a prefix of the log at ${b?.tree_size}`;
}
