/**
 * SealedEntry (sealed_entry.proto): the entry of a SendSealed, which hides the sender from
 * the server. It carries the sender's certificate and the DeviceEnvelope a Send entry would
 * carry, encrypted to the recipient device's X25519 identity key R:
 *
 *   e, E       = an ephemeral X25519 key pair, fresh per Send attempt (one for all its entries)
 *   okm        = HKDF-SHA256(ikm = X25519(e, R), salt = E || R, info = "sealpost.sealed-entry.v1", 44)
 *   key, nonce = okm[0..32], okm[32..44]
 *   ciphertext = AES-256-GCM(key, nonce, serialized SealedEntryContent, ad = label || E || R)
 *
 * Opening proves nothing about the sender by itself: the recipient then verifies the
 * certificate and decrypts the envelope with the session of the device it names (mail-pipeline.ts).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { SealedEntryContentSchema, SealedEntrySchema } from "@sealpost/gen/sealpost/envelope/v1/sealed_entry_pb.js";
import type { SenderCertificate } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { concatBytes, wipe } from "../crypto/bytes.js";
import { InvalidMessageError, UnsupportedVersionError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { PROTOCOL_VERSION, SEALED_ENTRY_LABEL } from "./labels.js";

/** The ephemeral key pair of one sealed Send attempt. */
export interface SealingKey {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export async function newSealingKey(provider: CryptoProvider): Promise<SealingKey> {
  const privateKey = provider.random(32);
  return { privateKey, publicKey: await provider.x25519PublicKey(privateKey) };
}

async function entryKeys(provider: CryptoProvider, shared: Uint8Array, ephemeral: Uint8Array, recipient: Uint8Array) {
  const okm = await provider.hkdf(shared, concatBytes(ephemeral, recipient), SEALED_ENTRY_LABEL, 44);
  wipe(shared);
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32, 44), ad: concatBytes(SEALED_ENTRY_LABEL, ephemeral, recipient), okm };
}

/** Seals a serialized DeviceEnvelope and the sender's certificate to the device whose X25519 identity key is `recipientDhKey`. */
export async function sealEntry(
  provider: CryptoProvider,
  sealing: SealingKey,
  recipientDhKey: Uint8Array,
  certificate: SenderCertificate,
  deviceEnvelope: Uint8Array,
): Promise<Uint8Array> {
  const k = await entryKeys(provider, await provider.x25519(sealing.privateKey, recipientDhKey), sealing.publicKey, recipientDhKey);
  const plaintext = toBinary(SealedEntryContentSchema, create(SealedEntryContentSchema, { certificate, deviceEnvelope }));
  const ciphertext = await provider.aesGcmSeal(k.key, k.nonce, plaintext, k.ad);
  wipe(k.okm);
  return toBinary(SealedEntrySchema, create(SealedEntrySchema, { version: PROTOCOL_VERSION, ephemeralKey: sealing.publicKey, ciphertext }));
}

/**
 * Opens a SealedEntry with this device's X25519 identity key pair: the certificate (not yet
 * verified) and the DeviceEnvelope bytes. InvalidMessageError when it does not parse or
 * authenticate, UnsupportedVersionError for another version.
 */
export async function openSealedEntry(
  provider: CryptoProvider,
  identity: { dhPrivateKey: Uint8Array; dhPublicKey: Uint8Array },
  entry: Uint8Array,
): Promise<{ certificate: SenderCertificate; deviceEnvelope: Uint8Array }> {
  let sealed: ReturnType<typeof fromBinary<typeof SealedEntrySchema>>;
  try {
    sealed = fromBinary(SealedEntrySchema, entry, { readUnknownFields: false });
  } catch {
    throw new InvalidMessageError("sealed entry does not parse");
  }
  if (sealed.version !== PROTOCOL_VERSION) throw new UnsupportedVersionError(`sealed entry version ${sealed.version}`);
  if (sealed.ephemeralKey.length !== 32) throw new InvalidMessageError(`sealed entry ephemeral key is ${sealed.ephemeralKey.length} bytes, not 32`);
  let shared: Uint8Array;
  try {
    shared = await provider.x25519(identity.dhPrivateKey, sealed.ephemeralKey);
  } catch {
    throw new InvalidMessageError("sealed entry ephemeral key is not a usable X25519 key");
  }
  const k = await entryKeys(provider, shared, sealed.ephemeralKey, identity.dhPublicKey);
  const plaintext = await provider.aesGcmOpen(k.key, k.nonce, sealed.ciphertext, k.ad);
  wipe(k.okm);
  if (!plaintext) throw new InvalidMessageError("sealed entry does not authenticate for this device");
  let content: ReturnType<typeof fromBinary<typeof SealedEntryContentSchema>>;
  try {
    content = fromBinary(SealedEntryContentSchema, plaintext, { readUnknownFields: false });
  } catch {
    throw new InvalidMessageError("sealed entry content does not parse");
  }
  if (!content.certificate || content.deviceEnvelope.length === 0) throw new InvalidMessageError("sealed entry lacks a certificate or an envelope");
  return { certificate: content.certificate, deviceEnvelope: content.deviceEnvelope };
}
