/**
 * An append-only Merkle tree with RFC 9162 (Certificate Transparency 2.0) hashing, in
 * memory: roots, inclusion proofs and consistency proofs for any tree size up to the
 * current one. Every complete, aligned subtree's hash is kept (levels[k][i] covers leaves
 * [i * 2^k, (i + 1) * 2^k)), so the hash of any range RFC 9162's recursion asks for is at
 * most O(log n) cached hashes and a proof costs O(log^2 n) hash operations. Memory: about
 * two 32-byte hashes per leaf, packed per level (PackedList).
 */
import { createHash } from "node:crypto";

const LEAF = Buffer.from([0x00]);
const NODE = Buffer.from([0x01]);

/** RFC 9162 leaf hash: SHA-256(0x00 || leaf). */
export function leafHash(leaf: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(LEAF).update(leaf).digest());
}

/** RFC 9162 interior node hash: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(NODE).update(left).update(right).digest());
}

const EMPTY_ROOT = new Uint8Array(createHash("sha256").digest());

/** The largest power of two smaller than n (n > 1). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Fixed-width records packed in one growing buffer (one object per list, not per record). */
export class PackedList {
  private buf: Uint8Array;
  length = 0;

  constructor(private readonly width: number) {
    this.buf = new Uint8Array(width * 1024);
  }

  push(record: Uint8Array): void {
    if ((this.length + 1) * this.width > this.buf.length) {
      const bigger = new Uint8Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf.set(record, this.length * this.width);
    this.length++;
  }

  /** A view of record i (records never change once written). */
  at(i: number): Uint8Array {
    return this.buf.subarray(i * this.width, (i + 1) * this.width);
  }
}

export class MerkleTree {
  /** levels[0]: leaf hashes; levels[k]: complete subtrees of 2^k leaves. */
  private readonly levels: PackedList[] = [new PackedList(32)];

  get size(): number {
    return this.levels[0].length;
  }

  /** Appends a leaf (its hash) and returns its index. */
  appendHash(hash: Uint8Array): number {
    const index = this.levels[0].length;
    this.levels[0].push(hash);
    // Complete every subtree this leaf closes.
    let i = index;
    for (let k = 0; i % 2 === 1; k++) {
      const level = this.levels[k];
      const parent = nodeHash(level.at(i - 1), level.at(i));
      (this.levels[k + 1] ??= new PackedList(32)).push(parent);
      i >>= 1;
    }
    return index;
  }

  /** MTH of the first n leaves. */
  root(n = this.size): Uint8Array {
    this.check(n);
    return n === 0 ? EMPTY_ROOT : this.rangeHash(0, n);
  }

  /** RFC 9162 PATH(m, D[n]): the audit path of leaf m in the tree of the first n leaves, leaf upward. */
  inclusionProof(m: number, n = this.size): Uint8Array[] {
    this.check(n);
    if (m < 0 || m >= n) throw new RangeError(`leaf ${m} is not in a tree of ${n}`);
    const path: Uint8Array[] = [];
    this.path(m, 0, n, path);
    return path;
  }

  /** RFC 9162 PROOF(m, D[n]): that the tree of the first m leaves is a prefix of the tree of the first n. */
  consistencyProof(m: number, n = this.size): Uint8Array[] {
    this.check(n);
    if (m < 0 || m > n) throw new RangeError(`no consistency proof from ${m} to ${n}`);
    if (m === 0 || m === n) return [];
    const proof: Uint8Array[] = [];
    this.subproof(m, 0, n, true, proof);
    return proof;
  }

  private check(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.size) throw new RangeError(`tree size ${n} is beyond the log's ${this.size}`);
  }

  /** MTH(D[start:end]). */
  private rangeHash(start: number, end: number): Uint8Array {
    const n = end - start;
    if ((n & (n - 1)) === 0 && start % n === 0) {
      const k = Math.log2(n);
      return this.levels[k].at(start / n);
    }
    const k = splitPoint(n);
    return nodeHash(this.rangeHash(start, start + k), this.rangeHash(start + k, end));
  }

  private path(m: number, start: number, end: number, out: Uint8Array[]): void {
    const n = end - start;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      this.path(m, start, start + k, out);
      out.push(this.rangeHash(start + k, end));
    } else {
      this.path(m - k, start + k, end, out);
      out.push(this.rangeHash(start, start + k));
    }
  }

  private subproof(m: number, start: number, end: number, whole: boolean, out: Uint8Array[]): void {
    const n = end - start;
    if (m === n) {
      if (!whole) out.push(this.rangeHash(start, end));
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      this.subproof(m, start, start + k, whole, out);
      out.push(this.rangeHash(start + k, end));
    } else {
      this.subproof(m - k, start + k, end, false, out);
      out.push(this.rangeHash(start, start + k));
    }
  }
}
