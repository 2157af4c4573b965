/**
 * SealedBody: the content of a Send, encrypted once under a fresh 32-byte content key.
 *
 *   key || nonce = HKDF-SHA256(ikm = content key, salt = empty, info = "sealpost.sealed-body.v1", L = 44)
 *   ad           = "sealpost.sealed-body.v1" || u8 version (1) || message_id (16)
 *   ciphertext   = AES-256-GCM(key, nonce, pad(serialized Content), ad)
 *
 * The nonce can be derived because every content key seals exactly one body.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { SharedBodySchema, SealedBodySchema } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { concatBytes, wipe } from "../crypto/bytes.js";
import { BodyMismatchError, InvalidMessageError, UnsupportedVersionError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { PROTOCOL_VERSION, SEALED_BODY_LABEL } from "./labels.js";
import { pad, unpad } from "./padding.js";

const EMPTY = new Uint8Array(0);

function bodyAssociatedData(messageId: Uint8Array): Uint8Array {
  return concatBytes(SEALED_BODY_LABEL, new Uint8Array([PROTOCOL_VERSION]), messageId);
}

/** Pads and seals serialized Content; returns the serialized SharedBody. */
export function sealBody(provider: CryptoProvider, contentKey: Uint8Array, messageId: Uint8Array, content: Uint8Array): Uint8Array {
  const material = provider.hkdf(contentKey, EMPTY, SEALED_BODY_LABEL, 44);
  const padded = pad(content);
  const ciphertext = provider.aesGcmSeal(material.subarray(0, 32), material.subarray(32, 44), padded, bodyAssociatedData(messageId));
  wipe(material, padded);
  return toBinary(SharedBodySchema, create(SharedBodySchema, { kind: { case: "sealed", value: create(SealedBodySchema, { version: PROTOCOL_VERSION, ciphertext }) } }));
}

/** Opens a SealedBody; returns the serialized Content (padding removed). */
export function openSealedBody(provider: CryptoProvider, contentKey: Uint8Array, messageId: Uint8Array, sealed: { version: number; ciphertext: Uint8Array }): Uint8Array {
  if (sealed.version !== PROTOCOL_VERSION) throw new UnsupportedVersionError(`sealed body version ${sealed.version}`);
  if (contentKey.length !== 32) throw new InvalidMessageError("content key must be 32 bytes");
  const material = provider.hkdf(contentKey, EMPTY, SEALED_BODY_LABEL, 44);
  const padded = provider.aesGcmOpen(material.subarray(0, 32), material.subarray(32, 44), sealed.ciphertext, bodyAssociatedData(messageId));
  wipe(material);
  if (!padded) throw new BodyMismatchError("shared body does not authenticate under the entry's content key");
  try {
    return unpad(padded);
  } catch {
    throw new BodyMismatchError("shared body padding is malformed");
  }
}

/** Parses a serialized SharedBody; InvalidMessageError when it does not parse. */
export function parseSharedBody(bytes: Uint8Array) {
  try {
    return fromBinary(SharedBodySchema, bytes);
  } catch {
    throw new InvalidMessageError("shared body does not parse");
  }
}
