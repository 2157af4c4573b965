/**
 * The recipient's check of a sender certificate, written from PROTOCOL.md ("Sender
 * certificates") for the conformance runner, independent of the TypeScript client: what a
 * third-party recipient would do with the server's answer.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { verifyEd25519 } from "./ed25519-rule.js";
import { SenderCertificate_BodySchema } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { asBytes, concat, utf8 } from "./bytes.js";

const LABEL = utf8("sealpost.sender-certificate.v1");

/** Undefined when `certificate` (proto3 JSON) is valid for the expected device; else what is wrong. */
export function senderCertificateProblem(
  certificate: unknown,
  keys: unknown,
  expected: { accountId: string; deviceId: number; identityKey: Uint8Array; nowMs: number },
): string | undefined {
  const cert = certificate as { body?: unknown; signature?: unknown } | undefined;
  if (!cert?.body || !cert.signature) return "no body or no signature";
  const body = asBytes(cert.body, "certificate.body");
  const signature = asBytes(cert.signature, "certificate.signature");
  let parsed: ReturnType<typeof fromBinary<typeof SenderCertificate_BodySchema>>;
  try {
    parsed = fromBinary(SenderCertificate_BodySchema, body);
  } catch {
    return "the body does not parse as SenderCertificate.Body";
  }
  const key = (Array.isArray(keys) ? keys : []).find((k: { key_id?: unknown }) => Number(k.key_id) === parsed.keyId) as { public_key?: unknown } | undefined;
  if (!key?.public_key) return `key_id ${parsed.keyId} is not among the published keys`;
  if (!verifyEd25519(signature, concat(LABEL, body), asBytes(key.public_key, "keys[].public_key"))) return "the signature does not verify over label || body";
  if (Number(parsed.expiresAtMs) <= expected.nowMs) return `expired at ${parsed.expiresAtMs}`;
  if (parsed.accountId !== expected.accountId || parsed.deviceId !== expected.deviceId)
    return `names ${parsed.accountId}/${parsed.deviceId}, not ${expected.accountId}/${expected.deviceId}`;
  const id = parsed.identityKey;
  if (id.length !== expected.identityKey.length || id.some((b, i) => b !== expected.identityKey[i])) return "its identity key is not the device's";
  return undefined;
}
