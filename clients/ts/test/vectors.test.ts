/** Every provider reproduces conformance/vectors byte for byte, and recorded ciphertexts replay. */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { EntryPayloadSchema } from "@sealpost/gen/sealpost/envelope/v1/device_envelope_pb.js";
import { fromHex, toHex } from "../src/crypto/bytes.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { createWebCryptoProvider } from "../src/crypto/webcrypto-provider.js";
import { unpad } from "../src/protocol/padding.js";
import { initResponder, planDecrypt } from "../src/protocol/ratchet.js";
import { accountIndex } from "../src/directory/key-transparency.js";
import { transparencyLeaf, treeHeadSignedBytes } from "../src/directory/labels.js";
import { leafHash, verifyConsistency, verifyInclusion } from "../src/directory/merkle-proofs.js";
import { buildAllVectors, type ProviderFactory } from "../src/tools/vector-builders.js";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../conformance/vectors");
const load = (name: string) => JSON.parse(readFileSync(path.join(dir, name), "utf8"));

const FACTORIES: [string, ProviderFactory][] = [
  ["noble", (random) => createNobleProvider({ random })],
  ["node", (random) => createNodeProvider({ random })],
  ["webcrypto", (random) => createWebCryptoProvider({ random })],
];

describe.each(FACTORIES)("conformance vectors (%s)", (_name, make) => {
  it("rebuilds every vector file byte-identically", async () => {
    const files = await buildAllVectors(make);
    expect(Object.keys(files).length).toBe(12);
    for (const [name, value] of Object.entries(files)) {
      expect(JSON.stringify(value, null, 2) + "\n", name).toBe(readFileSync(path.join(dir, name), "utf8"));
    }
  });

  it("ed25519-rule: verification accepts exactly the cases the protocol's rule accepts", async () => {
    const v = load("ed25519-rule.json");
    const p = make(() => {
      throw new Error("no randomness needed");
    });
    for (const c of v.cases) expect(await p.ed25519Verify(fromHex(c.public_key), fromHex(v.message), fromHex(c.signature)), c.name).toBe(c.valid);
  });

  it("primitives: recomputes each recorded output from its inputs", async () => {
    const v = load("primitives.json");
    const p = make(() => {
      throw new Error("no randomness needed");
    });
    for (const x of v.x25519) {
      expect(toHex(await p.x25519PublicKey(fromHex(x.private_a)))).toBe(x.public_a);
      expect(toHex(await p.x25519(fromHex(x.private_b), fromHex(x.public_a)))).toBe(x.shared);
    }
    for (const e of v.ed25519) expect(await p.ed25519Verify(fromHex(e.public_key), fromHex(e.message), fromHex(e.signature))).toBe(true);
    for (const h of v.hkdf_sha256) expect(toHex(await p.hkdf(fromHex(h.ikm), fromHex(h.salt), fromHex(h.info), h.length))).toBe(h.okm);
    for (const g of v.aes_256_gcm)
      expect(toHex((await p.aesGcmOpen(fromHex(g.key), fromHex(g.nonce), fromHex(g.ciphertext), fromHex(g.aad)))!)).toBe(g.plaintext);
    for (const k of v.ml_kem_768) {
      const kp = p.mlKemKeygen(fromHex(k.seed));
      expect(toHex(kp.publicKey)).toBe(k.public_key);
      expect(toHex(p.mlKemDecapsulate(fromHex(k.ciphertext), kp.secretKey))).toBe(k.shared_secret);
    }
  });

  it("key signatures verify over the recorded signed bytes", async () => {
    const v = load("key-signatures.json");
    const p = make(() => new Uint8Array(0));
    expect(await p.ed25519Verify(fromHex(v.identity.signing_key), fromHex(v.identity.signed_bytes), fromHex(v.identity.dh_key_signature))).toBe(true);
    expect(await p.ed25519Verify(fromHex(v.identity.signing_key), fromHex(v.signed_prekey.signed_bytes), fromHex(v.signed_prekey.signature))).toBe(true);
    const kemBytes = new Uint8Array([...fromHex(v.kem_prekey.signed_bytes_prefix), ...fromHex(v.kem_prekey.public_key)]);
    expect(await p.ed25519Verify(fromHex(v.identity.signing_key), kemBytes, fromHex(v.kem_prekey.signature))).toBe(true);
  });

  it("transparency: leaves, roots, every inclusion and consistency proof and the tree head verify", async () => {
    const v = load("transparency.json");
    const p = make(() => new Uint8Array(0));
    for (const l of v.leaves) {
      expect(toHex(accountIndex(p, l.account_id))).toBe(l.account_index);
      expect(toHex(p.sha256(fromHex(l.device_list)))).toBe(l.list_hash);
      expect(toHex(transparencyLeaf(fromHex(l.account_index), BigInt(l.version), fromHex(l.list_hash)))).toBe(l.leaf);
      expect(toHex(leafHash(p, fromHex(l.leaf)))).toBe(l.leaf_hash);
    }
    const hashes = v.leaves.map((l: { leaf_hash: string }) => fromHex(l.leaf_hash));
    const root = (n: number) => fromHex(v.roots[n - 1].root_hash);
    for (const x of v.inclusion)
      expect(verifyInclusion(p, hashes[x.leaf_index], x.leaf_index, x.tree_size, x.audit_path.map(fromHex), root(x.tree_size))).toBe(true);
    for (const x of v.consistency)
      expect(verifyConsistency(p, x.first_size, x.second_size, root(x.first_size), root(x.second_size), x.proof.map(fromHex))).toBe(true);
    const h = v.tree_head;
    expect(toHex(treeHeadSignedBytes(BigInt(h.tree_size), fromHex(h.root_hash), BigInt(h.timestamp_ms)))).toBe(h.signed_bytes);
    expect(await p.ed25519Verify(fromHex(h.log_key), fromHex(h.signed_bytes), fromHex(h.signature))).toBe(true);
  });

  it("pq-ratchet: KEM fields where the schedule puts them, every delivery opens, both root keys end equal", () => {
    const v = load("pq-ratchet.json");
    const byName = new Map<string, Record<string, string | number>>(v.messages.map((m: { name: string }) => [m.name, m]));
    const kem = v.messages.map((m: Record<string, number>) => `${m.name}:${m.kem_public_key_id}/${m.kem_ciphertext_key_id}`);
    expect(kem).toEqual(["a0:0/0", "a1:0/0", "b0:0/0", "b1:0/0", "a2:1/0", "b2:1/1", "b3:0/1", "a3:0/1", "a4:0/1", "b4:0/0", "b5:0/0", "a5:2/0"]);
    for (const m of v.messages) {
      expect(m.kem_public_key.length / 2).toBe(m.kem_public_key_id ? 1184 : 0);
      expect(m.kem_ciphertext.length / 2).toBe(m.kem_ciphertext_key_id ? 1088 : 0);
      // The AD is the 132-byte v1 layout with version 2, then both KEM fields with ids and lengths.
      expect(m.associated_data.length / 2).toBe(132 + 16 + m.kem_public_key.length / 2 + m.kem_ciphertext.length / 2);
      expect(m.associated_data.slice(54, 56)).toBe("02");
    }
    for (const d of v.deliveries) expect(d.plaintext).toBe(byName.get(d.name)!.plaintext);
    const last = v.deliveries.at(-1);
    expect(last.root_key_after).toBe(byName.get(last.name)!.root_key_after);
  });

  it("envelope-inline: an inline entry's payload holds pad(content) and no body key; the large text takes a body", () => {
    const v = load("envelope-inline.json");
    expect(v.sends.map((s: { inline: boolean }) => s.inline)).toEqual([true, true, false]);
    for (const s of v.sends) {
      expect(s.entry.length / 2).toBeLessThanOrEqual(s.inline ? v.constants.max_inline_envelope_bytes : v.constants.max_entry_bytes);
      expect(s.shared_body === "").toBe(s.inline);
      const payload = fromBinary(EntryPayloadSchema, fromHex(s.entry_payload));
      expect(toHex(payload.messageId)).toBe(s.message_id);
      if (s.inline) {
        expect(payload.contentKey.length + payload.bodySha256.length).toBe(0);
        expect(toHex(unpad(payload.content))).toBe(s.content);
      } else {
        expect(payload.content).toHaveLength(0);
        expect(toHex(payload.bodySha256)).toBe(toHex(createHash("sha256").update(fromHex(s.shared_body)).digest()));
      }
    }
  });

  it("ratchet: a fresh responder replays Alice's first chain out of order from the recorded keys", async () => {
    const v = load("ratchet.json");
    const p = make(() => {
      throw new Error("a receiver that does not send draws no randomness");
    });
    const bob = initResponder(
      fromHex(v.session_secret),
      fromHex(v.bob_identity_dh_key),
      fromHex(v.alice_identity_dh_key),
      fromHex(v.bob_signed_prekey_private),
      fromHex(v.bob_signed_prekey_public),
      new Uint8Array(32),
      0,
      1,
    );
    const byName = new Map<string, { ratchet_key: string; previous_chain_length: number; counter: number; ciphertext: string; plaintext: string }>(
      v.messages.map((m: { name: string }) => [m.name, m]),
    );
    for (const name of ["a2", "a0", "a1"]) {
      const m = byName.get(name)!;
      const plan = await planDecrypt(
        p,
        bob,
        { ratchetKey: fromHex(m.ratchet_key), previousCounter: m.previous_chain_length, counter: m.counter },
        fromHex(m.ciphertext),
      );
      plan.commit();
      expect(toHex(plan.plaintext)).toBe(m.plaintext);
    }
  });
});
