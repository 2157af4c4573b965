/** SealedEntry: the vector replays from the spec's formula, and every malformed or misdirected entry is refused. */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { SealedEntrySchema } from "@sealpost/gen/sealpost/envelope/v1/sealed_entry_pb.js";
import { SenderCertificateSchema } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { concatBytes, fromHex, toHex, utf8 } from "../src/crypto/bytes.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { InvalidMessageError, UnsupportedVersionError } from "../src/crypto/errors.js";
import { newSealingKey, openSealedEntry, sealEntry } from "../src/protocol/sealed-entry.js";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../conformance/vectors");
const v = JSON.parse(readFileSync(path.join(dir, "sealed-entry.json"), "utf8"));

describe.each([
  ["noble", createNobleProvider()],
  ["node", createNodeProvider()],
])("SealedEntry (%s)", (_name, p) => {
  const recipient = { dhPrivateKey: fromHex(v.recipient_dh_private_key), dhPublicKey: fromHex(v.recipient_dh_key) };

  it("the vector follows the spec's derivation, step by step, with the bare primitives", async () => {
    const shared = await p.x25519(fromHex(v.ephemeral_private_key), recipient.dhPublicKey);
    expect(toHex(shared)).toBe(v.shared_secret);
    const okm = await p.hkdf(shared, concatBytes(fromHex(v.ephemeral_key), recipient.dhPublicKey), utf8("sealpost.sealed-entry.v1"), 44);
    expect([toHex(okm.subarray(0, 32)), toHex(okm.subarray(32))]).toEqual([v.key, v.nonce]);
    const sealed = fromBinary(SealedEntrySchema, fromHex(v.sealed_entry));
    expect(sealed.version).toBe(1);
    expect(toHex(sealed.ephemeralKey)).toBe(v.ephemeral_key);
    const plain = await p.aesGcmOpen(okm.subarray(0, 32), okm.subarray(32), sealed.ciphertext, fromHex(v.associated_data));
    expect(plain && toHex(plain)).toBe(v.sealed_entry_content);
  });

  it("opens the vector to its certificate and envelope", async () => {
    const opened = await openSealedEntry(p, recipient, fromHex(v.sealed_entry));
    expect(toHex(toBinary(SenderCertificateSchema, opened.certificate))).toBe(v.certificate);
    expect(toHex(opened.deviceEnvelope)).toBe(v.device_envelope);
  });

  it("opens only for its recipient", async () => {
    const other = await newSealingKey(p);
    await expect(openSealedEntry(p, { dhPrivateKey: other.privateKey, dhPublicKey: other.publicKey }, fromHex(v.sealed_entry))).rejects.toThrow(
      InvalidMessageError,
    );
  });

  it("refuses any flipped bit of the ciphertext or the ephemeral key", async () => {
    const good = fromBinary(SealedEntrySchema, fromHex(v.sealed_entry));
    for (const i of [0, 17, good.ciphertext.length - 1]) {
      const ciphertext = good.ciphertext.slice();
      ciphertext[i] ^= 1;
      await expect(openSealedEntry(p, recipient, toBinary(SealedEntrySchema, { ...good, ciphertext }))).rejects.toThrow(InvalidMessageError);
    }
    const ephemeralKey = good.ephemeralKey.slice();
    ephemeralKey[3] ^= 0x10;
    await expect(openSealedEntry(p, recipient, toBinary(SealedEntrySchema, { ...good, ephemeralKey }))).rejects.toThrow(InvalidMessageError);
  });

  it("names what is wrong with malformed entries: another version, a short or low-order key, garbage", async () => {
    const good = fromBinary(SealedEntrySchema, fromHex(v.sealed_entry));
    await expect(openSealedEntry(p, recipient, toBinary(SealedEntrySchema, { ...good, version: 2 }))).rejects.toThrow(UnsupportedVersionError);
    await expect(openSealedEntry(p, recipient, toBinary(SealedEntrySchema, { ...good, ephemeralKey: good.ephemeralKey.subarray(1) }))).rejects.toThrow(
      /not 32/,
    );
    await expect(openSealedEntry(p, recipient, toBinary(SealedEntrySchema, { ...good, ephemeralKey: new Uint8Array(32) }))).rejects.toThrow(
      InvalidMessageError,
    );
    await expect(openSealedEntry(p, recipient, new Uint8Array([0xff, 0xff, 0xff]))).rejects.toThrow(/does not parse/);
    await expect(openSealedEntry(p, recipient, new Uint8Array(0))).rejects.toThrow(UnsupportedVersionError);
  });

  it("round-trips with a fresh key, and each recipient of one sealing key gets its own ciphertext", async () => {
    const a = await newSealingKey(p);
    const r1 = await newSealingKey(p);
    const r2 = await newSealingKey(p);
    const cert = create(SenderCertificateSchema, { body: new Uint8Array([1, 2, 3]), signature: new Uint8Array(64) });
    const envelope = new Uint8Array([9, 9, 9]);
    const e1 = await sealEntry(p, a, r1.publicKey, cert, envelope);
    const e2 = await sealEntry(p, a, r2.publicKey, cert, envelope);
    expect(toHex(fromBinary(SealedEntrySchema, e1).ciphertext)).not.toBe(toHex(fromBinary(SealedEntrySchema, e2).ciphertext));
    expect((await openSealedEntry(p, { dhPrivateKey: r2.privateKey, dhPublicKey: r2.publicKey }, e2)).deviceEnvelope).toEqual(envelope);
  });
});
