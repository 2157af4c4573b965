/**
 * SealedBody: the content of a Send, encrypted once under a fresh 32-byte content key.
 *
 *   key        = the content key (32 fresh random bytes, sealing exactly one body)
 *   nonce      = 12 zero bytes (the key is single-use)
 *   ad         = "sealpost.sealed-body.v1" || u8 version (1) || message_id (16)
 *   ciphertext = AES-256-GCM(key, nonce, pad(serialized Content), ad)
 */
import { fromBinary } from "@bufbuild/protobuf";
import { type SharedBody, SharedBodySchema } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { concatBytes, wipe } from "../crypto/bytes.js";
import { BodyMismatchError, InvalidMessageError, UnsupportedVersionError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { PROTOCOL_VERSION, SEALED_BODY_LABEL } from "./labels.js";
import { decodeCanonicalSealedBody } from "./canonical-decoding.js";
import { unpad } from "./padding.js";
import { encodeSealedSharedBody } from "./wire.js";

const ZERO_NONCE = new Uint8Array(12);

function bodyAssociatedData(messageId: Uint8Array): Uint8Array {
  return concatBytes(SEALED_BODY_LABEL, new Uint8Array([PROTOCOL_VERSION]), messageId);
}

/**
 * Seals serialized Content already padded (padding.ts: pad, or an encoder writing into
 * paddedBuffer); returns the serialized SharedBody. The padded plaintext is wiped.
 */
export async function sealBody(provider: CryptoProvider, contentKey: Uint8Array, messageId: Uint8Array, padded: Uint8Array): Promise<Uint8Array> {
  const ciphertext = await provider.aesGcmSeal(contentKey, ZERO_NONCE, padded, bodyAssociatedData(messageId));
  wipe(padded);
  return encodeSealedSharedBody(PROTOCOL_VERSION, ciphertext);
}

/** Opens a SealedBody; returns the serialized Content (padding removed). */
export async function openSealedBody(
  provider: CryptoProvider,
  contentKey: Uint8Array,
  messageId: Uint8Array,
  sealed: { version: number; ciphertext: Uint8Array },
): Promise<Uint8Array> {
  if (sealed.version !== PROTOCOL_VERSION) throw new UnsupportedVersionError(`sealed body version ${sealed.version}`);
  if (contentKey.length !== 32) throw new InvalidMessageError("content key must be 32 bytes");
  const padded = await provider.aesGcmOpen(contentKey, ZERO_NONCE, sealed.ciphertext, bodyAssociatedData(messageId));
  if (!padded) throw new BodyMismatchError("shared body does not authenticate under the entry's content key");
  try {
    return unpad(padded);
  } catch {
    throw new BodyMismatchError("shared body padding is malformed");
  }
}

/** Parses a serialized SharedBody; InvalidMessageError when it does not parse. */
export function parseSharedBody(bytes: Uint8Array): SharedBody {
  const sealed = decodeCanonicalSealedBody(bytes);
  if (sealed) return { $typeName: "sealpost.envelope.v1.SharedBody", kind: { case: "sealed", value: sealed } };
  try {
    return fromBinary(SharedBodySchema, bytes);
  } catch {
    throw new InvalidMessageError("shared body does not parse");
  }
}
