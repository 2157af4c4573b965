/**
 * Sender-certificate verification against the shared vector (key-signatures.json), with both
 * providers, and every way a certificate is refused: malformed, an unknown key, a forged
 * signature or body, expired, or naming another account, device or identity key.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { SenderCertificate_BodySchema, SenderCertificateSchema, type CertificateKey } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { describe, expect, it } from "vitest";
import { fromHex } from "../src/crypto/bytes.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { verifySenderCertificate, type SenderCertificateProblem } from "../src/directory/sender-certificate.js";

const v = JSON.parse(readFileSync(fileURLToPath(new URL("../../../conformance/vectors/key-signatures.json", import.meta.url)), "utf8")).sender_certificate;
const cert = create(SenderCertificateSchema, { body: fromHex(v.body), signature: fromHex(v.signature) });
const keys: CertificateKey[] = [{ $typeName: "sealpost.directory.v1.CertificateKey", keyId: v.server_key.key_id, publicKey: fromHex(v.server_key.public_key) }];
const before = v.expires_at_ms - 1;

describe.each([
  ["node", createNodeProvider()],
  ["noble", createNobleProvider()],
])("verifySenderCertificate (%s)", (_name, p) => {
  const refused = (problem: SenderCertificateProblem, f: () => Promise<unknown>) => expect(f()).rejects.toThrow(expect.objectContaining({ problem }));

  it("accepts the vector's certificate, for its device and identity key", async () => {
    expect(await p.ed25519PublicKey(fromHex(v.server_key_seed))).toEqual(keys[0].publicKey);
    const got = await verifySenderCertificate(p, cert, keys, before, { accountId: "alice", deviceId: 1, identityKey: fromHex(v.identity_key) });
    expect(got).toEqual({ accountId: "alice", deviceId: 1, identityKey: fromHex(v.identity_key), expiresAtMs: v.expires_at_ms, keyId: 1 });
  });

  it("refuses it from its expiry on", async () => {
    await refused("expired", () => verifySenderCertificate(p, cert, keys, v.expires_at_ms));
  });

  it("refuses a forged signature, a changed body and a key the server does not publish", async () => {
    const sig = cert.signature.slice();
    sig[10] ^= 1;
    await refused("bad-signature", () => verifySenderCertificate(p, create(SenderCertificateSchema, { body: cert.body, signature: sig }), keys, before));
    const body = fromBinary(SenderCertificate_BodySchema, cert.body);
    body.deviceId = 2; // the same signature over another device
    await refused("bad-signature", () =>
      verifySenderCertificate(
        p,
        create(SenderCertificateSchema, { body: toBinary(SenderCertificate_BodySchema, body), signature: cert.signature }),
        keys,
        before,
      ),
    );
    await refused("unknown-key", () => verifySenderCertificate(p, cert, [{ ...keys[0], keyId: 2 }], before));
    await refused("bad-signature", async () =>
      verifySenderCertificate(p, cert, [{ ...keys[0], publicKey: await p.ed25519PublicKey(new Uint8Array(32)) }], before),
    );
  });

  it("refuses a certificate naming another account, device or identity key than the session's", async () => {
    await refused("mismatched", () => verifySenderCertificate(p, cert, keys, before, { accountId: "mallory" }));
    await refused("mismatched", () => verifySenderCertificate(p, cert, keys, before, { deviceId: 2 }));
    await refused("mismatched", () => verifySenderCertificate(p, cert, keys, before, { identityKey: new Uint8Array(32) }));
  });

  it("refuses malformed certificates", async () => {
    await refused("malformed", () =>
      verifySenderCertificate(p, create(SenderCertificateSchema, { body: new Uint8Array([0xff, 0xff]), signature: cert.signature }), keys, before),
    );
    await refused("malformed", () =>
      verifySenderCertificate(p, create(SenderCertificateSchema, { body: cert.body, signature: cert.signature.slice(0, 63) }), keys, before),
    );
    const noKey = fromBinary(SenderCertificate_BodySchema, cert.body);
    noKey.identityKey = new Uint8Array(0);
    await refused("malformed", () =>
      verifySenderCertificate(
        p,
        create(SenderCertificateSchema, { body: toBinary(SenderCertificate_BodySchema, noKey), signature: cert.signature }),
        keys,
        before,
      ),
    );
  });
});
