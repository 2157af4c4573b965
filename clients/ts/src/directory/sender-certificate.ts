/**
 * Sender certificates (sender_certificate.proto): the server's short-lived statement that a
 * device of an account holds an identity key, carried inside sealed mail so the recipient can
 * authenticate a sender the server does not name. Verification checks, in this order: the
 * body parses, its key is one of the server's certificate keys, the Ed25519 signature over
 * "sealpost.sender-certificate.v1" || body, the expiry, and (when given) that it names the
 * expected device and the identity key of the session the mail came through.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { SenderCertificate_BodySchema, type CertificateKey, type SenderCertificate } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { bytesEqual, concatBytes, utf8 } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";

export const SENDER_CERTIFICATE_LABEL = utf8("sealpost.sender-certificate.v1");

export type SenderCertificateProblem = "malformed" | "unknown-key" | "bad-signature" | "expired" | "mismatched";

export class SenderCertificateError extends Error {
  constructor(
    readonly problem: SenderCertificateProblem,
    message: string,
  ) {
    super(message);
    this.name = "SenderCertificateError";
  }
}

export interface VerifiedSenderCertificate {
  accountId: string;
  deviceId: number;
  identityKey: Uint8Array;
  expiresAtMs: number;
  keyId: number;
}

/** The bytes a certificate key signs: the label, then the serialized body. */
export function senderCertificateSignedBytes(body: Uint8Array): Uint8Array {
  return concatBytes(SENDER_CERTIFICATE_LABEL, body);
}

/** Verifies `cert` against the server's `keys` at `nowMs`; throws SenderCertificateError naming the problem. */
export async function verifySenderCertificate(
  provider: CryptoProvider,
  cert: SenderCertificate,
  keys: CertificateKey[],
  nowMs: number,
  expected: { accountId?: string; deviceId?: number; identityKey?: Uint8Array } = {},
): Promise<VerifiedSenderCertificate> {
  let body: ReturnType<typeof fromBinary<typeof SenderCertificate_BodySchema>>;
  try {
    body = fromBinary(SenderCertificate_BodySchema, cert.body);
  } catch {
    throw new SenderCertificateError("malformed", "certificate body does not parse");
  }
  if (!body.accountId || body.deviceId < 1 || body.identityKey.length !== 32 || cert.signature.length !== 64) {
    throw new SenderCertificateError("malformed", "certificate lacks an account, a device, a 32-byte identity key or a 64-byte signature");
  }
  const key = keys.find((k) => k.keyId === body.keyId);
  if (key?.publicKey.length !== 32) throw new SenderCertificateError("unknown-key", `certificate key ${body.keyId} is not one of the server's`);
  if (!(await provider.ed25519Verify(key.publicKey, senderCertificateSignedBytes(cert.body), cert.signature))) {
    throw new SenderCertificateError("bad-signature", `certificate signature does not verify with key ${body.keyId}`);
  }
  const expiresAtMs = Number(body.expiresAtMs);
  if (nowMs >= expiresAtMs) throw new SenderCertificateError("expired", `certificate expired at ${new Date(expiresAtMs).toISOString()}`);
  const who = `${body.accountId}/${body.deviceId}`;
  if (expected.accountId !== undefined && expected.accountId !== body.accountId)
    throw new SenderCertificateError("mismatched", `certificate is for ${who}, not account ${expected.accountId}`);
  if (expected.deviceId !== undefined && expected.deviceId !== body.deviceId)
    throw new SenderCertificateError("mismatched", `certificate is for ${who}, not device ${expected.deviceId}`);
  if (expected.identityKey && !bytesEqual(expected.identityKey, body.identityKey)) {
    throw new SenderCertificateError("mismatched", `certificate's identity key for ${who} is not the session's`);
  }
  return { accountId: body.accountId, deviceId: body.deviceId, identityKey: body.identityKey, expiresAtMs, keyId: body.keyId };
}
