/**
 * Sender certificates: a short-lived, server-signed statement that a device of an account
 * holds an identity key (SenderCertificate in sender_certificate.proto), for sealed sending.
 *
 * The certificate key is an Ed25519 key derived from the instances' shared token secret
 * (HMAC subkey "sealpost.sender-certificate.v1/<version>"), so every instance signs with the
 * same key and no private key is stored anywhere else. Rotation: raise the key version
 * (--certificate-key-version); the keys of the current and the previous version are
 * published (GetCertificateKeys), so certificates issued just before a rotation still verify.
 */
import { createPrivateKey, createPublicKey, sign } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  CertificateKeySchema,
  SenderCertificate_BodySchema,
  SenderCertificateSchema,
  type CertificateKey,
  type SenderCertificate,
} from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import type { TokenSigner } from "../auth/tokens.js";

/** Signed bytes: this label, then the serialized body. */
export const SENDER_CERTIFICATE_LABEL = "sealpost.sender-certificate.v1";
/** How long a certificate is valid. */
export const SENDER_CERTIFICATE_TTL_MS = 24 * 60 * 60_000;

/** PKCS#8 DER of an Ed25519 private key is this prefix and the 32-byte seed. */
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

interface SigningKey {
  keyId: number;
  privateKey: ReturnType<typeof createPrivateKey>;
  publicKey: Uint8Array;
}

/** The Ed25519 key of a 32-byte seed. */
export function certificateKeyFromSeed(keyId: number, seed: Uint8Array): SigningKey {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return { keyId, privateKey, publicKey: new Uint8Array(spki.subarray(spki.length - 32)) };
}

/** The signature over the label and a serialized SenderCertificate.Body. */
export function signCertificateBody(key: SigningKey, body: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, Buffer.concat([Buffer.from(SENDER_CERTIFICATE_LABEL, "utf8"), body]), key.privateKey));
}

export class SenderCertificates {
  private readonly current: SigningKey;
  private readonly published: CertificateKey[];

  constructor(
    tokens: TokenSigner,
    /** Key version (>= 1); the key id is the version. */
    version: number,
    private readonly now: () => number,
    private readonly ttlMs = SENDER_CERTIFICATE_TTL_MS,
  ) {
    if (!Number.isInteger(version) || version < 1) throw new Error(`certificate key version must be a positive integer, got ${version}`);
    const keyOf = (v: number) => certificateKeyFromSeed(v, tokens.subkey(`${SENDER_CERTIFICATE_LABEL}/${v}`));
    this.current = keyOf(version);
    const keys = version > 1 ? [this.current, keyOf(version - 1)] : [this.current];
    this.published = keys.map((k) => create(CertificateKeySchema, { keyId: k.keyId, publicKey: k.publicKey }));
  }

  /** The current key first, then the previous one after a rotation. */
  keys(): CertificateKey[] {
    return this.published;
  }

  /** A certificate for a listed device and its identity signing key. */
  issue(accountId: string, deviceId: number, identityKey: Uint8Array): SenderCertificate {
    const body = toBinary(
      SenderCertificate_BodySchema,
      create(SenderCertificate_BodySchema, { accountId, deviceId, identityKey, expiresAtMs: BigInt(this.now() + this.ttlMs), keyId: this.current.keyId }),
    );
    return create(SenderCertificateSchema, { body, signature: signCertificateBody(this.current, body) });
  }
}
