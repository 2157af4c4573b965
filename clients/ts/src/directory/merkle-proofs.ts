/**
 * Verification of RFC 9162 (Certificate Transparency 2.0) Merkle proofs, for the key
 * transparency log (docs/PROTOCOL.md, "Key transparency"): leaf and node hashes, inclusion
 * proofs (RFC 9162 section 2.1.3.2) and consistency proofs (section 2.1.4.2), as written
 * there, over the provider's SHA-256. Plus the tree's root from its leaves (reference and
 * vectors).
 */
import { bytesEqual, concatBytes } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";

const LEAF = new Uint8Array([0x00]);
const NODE = new Uint8Array([0x01]);

export function leafHash(p: CryptoProvider, leaf: Uint8Array): Uint8Array {
  return p.sha256(concatBytes(LEAF, leaf));
}

export function nodeHash(p: CryptoProvider, left: Uint8Array, right: Uint8Array): Uint8Array {
  return p.sha256(concatBytes(NODE, left, right));
}

/** Whether `path` proves that the leaf with hash `leaf` is at `index` in the tree of `size` leaves with root `root`. */
export function verifyInclusion(p: CryptoProvider, leaf: Uint8Array, index: number, size: number, path: Uint8Array[], root: Uint8Array): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const node of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, node, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(p, r, node);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(r, root);
}

/** Whether `proof` proves that the tree of `first` leaves (root `firstRoot`) is a prefix of the tree of `second` (root `secondRoot`). */
export function verifyConsistency(
  p: CryptoProvider,
  first: number,
  second: number,
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
  proof: Uint8Array[],
): boolean {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 0 || first > second) return false;
  if (first === second) return proof.length === 0 && bytesEqual(firstRoot, secondRoot);
  if (first === 0) return proof.length === 0;
  if (proof.length === 0) return false;
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
      fr = nodeHash(p, c, fr);
      sr = nodeHash(p, c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(p, sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return bytesEqual(fr, firstRoot) && bytesEqual(sr, secondRoot) && sn === 0;
}

/** RFC 9162 MTH over leaf hashes (the definition, O(n)): for vectors and tests. */
export function rootOf(p: CryptoProvider, leafHashes: Uint8Array[]): Uint8Array {
  if (leafHashes.length === 0) return p.sha256(new Uint8Array(0));
  if (leafHashes.length === 1) return leafHashes[0];
  const k = split(leafHashes.length);
  return nodeHash(p, rootOf(p, leafHashes.slice(0, k)), rootOf(p, leafHashes.slice(k)));
}

const split = (n: number) => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};

/** RFC 9162 PATH(m, D[n]) over leaf hashes (the definition, O(n)): for vectors and tests. */
export function inclusionPathOf(p: CryptoProvider, leafHashes: Uint8Array[], m: number): Uint8Array[] {
  const n = leafHashes.length;
  if (n <= 1) return [];
  const k = split(n);
  return m < k
    ? [...inclusionPathOf(p, leafHashes.slice(0, k), m), rootOf(p, leafHashes.slice(k))]
    : [...inclusionPathOf(p, leafHashes.slice(k), m - k), rootOf(p, leafHashes.slice(0, k))];
}

/** RFC 9162 PROOF(m, D[n]) over leaf hashes (the definition, O(n)): for vectors and tests. */
export function consistencyProofOf(p: CryptoProvider, leafHashes: Uint8Array[], m: number): Uint8Array[] {
  const sub = (m: number, d: Uint8Array[], whole: boolean): Uint8Array[] => {
    if (m === d.length) return whole ? [] : [rootOf(p, d)];
    const k = split(d.length);
    return m <= k ? [...sub(m, d.slice(0, k), whole), rootOf(p, d.slice(k))] : [...sub(m - k, d.slice(k), false), rootOf(p, d.slice(0, k))];
  };
  return m === 0 || m === leafHashes.length ? [] : sub(m, leafHashes, true);
}

/** A compact range: the roots of the perfect subtrees covering the first leaves, largest first. */
export type Frontier = { height: number; hash: Uint8Array }[];

/** Adds a leaf to the perfect subtrees covering the leaves so far (merging equal heights). */
export function appendToFrontier(p: CryptoProvider, frontier: Frontier, leaf: Uint8Array): void {
  frontier.push({ height: 0, hash: leaf });
  while (frontier.length > 1 && frontier[frontier.length - 1].height === frontier[frontier.length - 2].height) {
    const right = frontier.pop()!;
    const left = frontier.pop()!;
    frontier.push({ height: left.height + 1, hash: nodeHash(p, left.hash, right.hash) });
  }
}

/** RFC 9162 MTH of the leaves the frontier covers: the subtrees folded from the right. */
export function frontierRoot(p: CryptoProvider, frontier: Frontier): Uint8Array {
  if (frontier.length === 0) return p.sha256(new Uint8Array(0));
  let r = frontier[frontier.length - 1].hash;
  for (let i = frontier.length - 2; i >= 0; i--) r = nodeHash(p, frontier[i].hash, r);
  return r;
}
