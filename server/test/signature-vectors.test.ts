/**
 * The server's own signature code (directory/signatures.ts: labels, signed byte layouts,
 * Ed25519 on node:crypto) against the shared vectors the client generates
 * (conformance/vectors/key-signatures.json): both sides must build the same bytes and
 * accept the same signatures, and reject them when one byte changes.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import {
  AUTH_LABEL,
  DEVICE_LIST_LABEL,
  IDENTITY_LABEL,
  KEM_PREKEY_LABEL,
  SIGNED_PREKEY_LABEL,
  authSignedBytes,
  concat,
  ed25519Verify,
  isStrictEd25519Key,
  prekeySignedBytes,
  SMALL_ORDER_KEYS,
} from "../src/directory/signatures.js";
import { SMALL_ORDER_KEYS as CLIENT_SMALL_ORDER_KEYS, isStrictEd25519Key as clientIsStrictKey } from "@sealpost/client/crypto";
import { certificateKeyFromSeed, signCertificateBody } from "../src/directory/sender-certificates.js";

const v = JSON.parse(readFileSync(new URL("../../conformance/vectors/key-signatures.json", import.meta.url), "utf8"));
const b = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));
const flip = (x: Uint8Array) => {
  const y = x.slice();
  y[y.length - 1] ^= 1;
  return y;
};

describe("server signatures match the shared vectors", () => {
  const signingKey = b(v.identity.signing_key);

  it("dh_key_signature: label || dh_key", () => {
    const signed = concat(IDENTITY_LABEL, b(v.identity.dh_key));
    expect(Buffer.from(signed).toString("hex")).toBe(v.identity.signed_bytes);
    expect(ed25519Verify(signingKey, signed, b(v.identity.dh_key_signature))).toBe(true);
    expect(ed25519Verify(signingKey, flip(signed), b(v.identity.dh_key_signature))).toBe(false);
  });

  it("signed X25519 and ML-KEM prekeys: label || u32be(key_id) || public key", () => {
    const spk = prekeySignedBytes(SIGNED_PREKEY_LABEL, v.signed_prekey.key_id, b(v.signed_prekey.public_key));
    expect(Buffer.from(spk).toString("hex")).toBe(v.signed_prekey.signed_bytes);
    expect(ed25519Verify(signingKey, spk, b(v.signed_prekey.signature))).toBe(true);
    const kem = prekeySignedBytes(KEM_PREKEY_LABEL, v.kem_prekey.key_id, b(v.kem_prekey.public_key));
    expect(Buffer.from(kem).toString("hex").startsWith(v.kem_prekey.signed_bytes_prefix)).toBe(true);
    expect(ed25519Verify(signingKey, kem, b(v.kem_prekey.signature))).toBe(true);
  });

  it("device list: label || device_list bytes, signed by the listed device", () => {
    const signed = concat(DEVICE_LIST_LABEL, b(v.device_list.device_list));
    expect(Buffer.from(signed).toString("hex")).toBe(v.device_list.signed_bytes);
    expect(ed25519Verify(signingKey, signed, b(v.device_list.signature))).toBe(true);
    expect(ed25519Verify(signingKey, flip(signed), b(v.device_list.signature))).toBe(false);
  });

  it("auth challenge: label || u8 len || account_id || u32be(device_id) || nonce", () => {
    const signed = authSignedBytes(v.auth.account_id, v.auth.device_id, b(v.auth.nonce));
    expect(Buffer.from(signed).toString("hex")).toBe(v.auth.signed_bytes);
    expect(Buffer.from(signed.subarray(0, AUTH_LABEL.length)).toString()).toBe("sealpost.auth.v1");
    expect(ed25519Verify(signingKey, signed, b(v.auth.signature))).toBe(true);
    expect(ed25519Verify(signingKey, authSignedBytes(v.auth.account_id, v.auth.device_id + 1, b(v.auth.nonce)), b(v.auth.signature))).toBe(false);
  });

  it("sender certificate: the server's key from a seed and its signature over label || body", () => {
    const c = v.sender_certificate;
    const key = certificateKeyFromSeed(1, b(c.server_key_seed));
    expect(Buffer.from(key.publicKey).toString("hex")).toBe(c.server_key.public_key);
    expect(Buffer.from(signCertificateBody(key, b(c.body))).toString("hex")).toBe(c.signature);
    expect(ed25519Verify(key.publicKey, b(c.signed_bytes), b(c.signature))).toBe(true);
    expect(ed25519Verify(key.publicKey, flip(b(c.signed_bytes)), b(c.signature))).toBe(false);
  });
});

describe("the protocol's Ed25519 rule on the server", () => {
  const rule = JSON.parse(readFileSync(new URL("../../conformance/vectors/ed25519-rule.json", import.meta.url), "utf8"));

  it("accepts exactly the cases of ed25519-rule.json (OpenSSL alone would accept the small-order key)", () => {
    for (const c of rule.cases) expect(ed25519Verify(b(c.public_key), b(rule.message), b(c.signature)), c.name).toBe(c.valid);
  });

  it("refuses the same small-order keys as the client", () => {
    expect(SMALL_ORDER_KEYS.map((k) => Buffer.from(k).toString("hex"))).toEqual(CLIENT_SMALL_ORDER_KEYS.map((k) => Buffer.from(k).toString("hex")));
  });

  it("judges keys as the client does, around p and the small-order encodings (two implementations of one rule)", () => {
    const p = (1n << 255n) - 19n;
    const le = (n: bigint, sign = false) => {
      const out = Buffer.alloc(32);
      for (let i = 0; i < 32; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
      if (sign) out[31] |= 0x80;
      return out;
    };
    const keys = [
      ...[0n, 1n, 2n, p - 2n, p - 1n, p, p + 1n, p + 18n, (1n << 255n) - 1n].flatMap((y) => [le(y), le(y, true)]),
      ...CLIENT_SMALL_ORDER_KEYS.map((k) => Buffer.from(k)),
      ...Array.from({ length: 200 }, (_, i) => Buffer.from(createHash("sha256").update(`key ${i}`).digest())),
    ];
    for (const k of keys) expect(isStrictEd25519Key(k), k.toString("hex")).toBe(clientIsStrictKey(k));
    expect(keys.filter((k) => isStrictEd25519Key(k)).length).toBeGreaterThan(150);
  });
});
