/**
 * The server's Merkle tree against the client's RFC 9162 verifiers (independent code):
 * every root equals the definition's, and every inclusion and consistency proof for every
 * size up to 70 (and spot checks at 1,000) verifies; a tampered proof does not.
 */
import { describe, expect, it } from "vitest";
import { createNodeProvider } from "@sealpost/client/crypto";
import { rootOf, verifyConsistency, verifyInclusion } from "../../clients/ts/src/directory/merkle-proofs.js";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { MerkleTree, leafHash } from "../src/transparency/merkle-tree.js";
import { accountIndex, encodeLeaf, listHash, treeHeadSignedBytes } from "../src/transparency/transparency-log.js";

const p = createNodeProvider();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function tree(n: number): { t: MerkleTree; leaves: Uint8Array[] } {
  const t = new MerkleTree();
  const leaves: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const h = leafHash(new TextEncoder().encode(`leaf ${i}`));
    leaves.push(h);
    t.appendHash(h);
  }
  return { t, leaves };
}

describe("MerkleTree", () => {
  it("roots, inclusion and consistency proofs agree with RFC 9162 for every size up to 70", () => {
    const { t, leaves } = tree(70);
    for (let n = 0; n <= 70; n++) {
      const root = t.root(n);
      expect(hex(root)).toBe(hex(rootOf(p, leaves.slice(0, n))));
      for (let m = 0; m < n; m++) expect(verifyInclusion(p, leaves[m], m, n, t.inclusionProof(m, n), root)).toBe(true);
      for (let m = 0; m <= n; m++) expect(verifyConsistency(p, m, n, t.root(m), root, t.consistencyProof(m, n))).toBe(true);
    }
  });

  it("a wrong leaf, index, root, path element or path length fails verification", () => {
    const { t, leaves } = tree(13);
    const path = t.inclusionProof(5, 13);
    const root = t.root(13);
    expect(verifyInclusion(p, leaves[6], 5, 13, path, root)).toBe(false);
    expect(verifyInclusion(p, leaves[5], 4, 13, path, root)).toBe(false);
    // (A path does not bind the size on its own: the signed tree head binds size and root.)
    expect(verifyInclusion(p, leaves[5], 5, 6, path, root)).toBe(false);
    expect(verifyInclusion(p, leaves[5], 5, 13, path, t.root(12))).toBe(false);
    expect(verifyInclusion(p, leaves[5], 5, 13, [...path.slice(0, -1), leaves[0]], root)).toBe(false);
    expect(verifyInclusion(p, leaves[5], 5, 13, path.slice(0, -1), root)).toBe(false);
    const proof = t.consistencyProof(7, 13);
    expect(verifyConsistency(p, 7, 13, t.root(7), root, proof)).toBe(true);
    expect(verifyConsistency(p, 7, 13, t.root(6), root, proof)).toBe(false);
    expect(verifyConsistency(p, 6, 13, t.root(7), root, proof)).toBe(false);
    expect(verifyConsistency(p, 7, 13, t.root(7), root, [...proof.slice(1), proof[0]])).toBe(false);
    expect(verifyConsistency(p, 7, 13, t.root(7), root, [])).toBe(false);
  });

  it("proofs at 1,000 leaves stay short (log n) and verify", () => {
    const { t, leaves } = tree(1000);
    for (const m of [0, 1, 511, 512, 999]) {
      const path = t.inclusionProof(m);
      expect(path.length).toBeLessThanOrEqual(10);
      expect(verifyInclusion(p, leaves[m], m, 1000, path, t.root())).toBe(true);
    }
    for (const m of [1, 333, 512, 999]) expect(verifyConsistency(p, m, 1000, t.root(m), t.root(), t.consistencyProof(m))).toBe(true);
  });

  it("reproduces conformance/vectors/transparency.json: leaves, roots, proofs and the signed bytes of a head", () => {
    const v = JSON.parse(readFileSync(fileURLToPath(new URL("../../conformance/vectors/transparency.json", import.meta.url)), "utf8"));
    const t = new MerkleTree();
    for (const l of v.leaves) {
      const leaf = encodeLeaf({ accountIndex: accountIndex(l.account_id), version: BigInt(l.version), listHash: listHash(Buffer.from(l.device_list, "hex")) });
      expect(hex(leaf)).toBe(l.leaf);
      t.appendHash(leafHash(leaf));
    }
    for (const r of v.roots) expect(hex(t.root(r.tree_size))).toBe(r.root_hash);
    for (const x of v.inclusion) expect(t.inclusionProof(x.leaf_index, x.tree_size).map(hex)).toEqual(x.audit_path);
    for (const x of v.consistency) expect(t.consistencyProof(x.first_size, x.second_size).map(hex)).toEqual(x.proof);
    const h = v.tree_head;
    expect(hex(treeHeadSignedBytes(BigInt(h.tree_size), Buffer.from(h.root_hash, "hex"), BigInt(h.timestamp_ms)))).toBe(h.signed_bytes);
  });
});
