/**
 * Device identity: an Ed25519 signing key plus an X25519 dh key bound to it by
 * dh_key_signature = Ed25519(signing key, "sealpost.identity.v1" || dh_key)
 * (proto/sealpost/directory/v1/device_list.proto, DeviceIdentity).
 */
import { create } from "@bufbuild/protobuf";
import { DeviceIdentitySchema, type DeviceIdentity } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { concatBytes } from "../crypto/bytes.js";
import { InvalidSignatureError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { IDENTITY_LABEL } from "./labels.js";

/** The private identity of this device. Never leaves the device. */
export interface LocalIdentity {
  deviceId: number;
  /** Ed25519 seed (private). */
  signingSeed: Uint8Array;
  /** Ed25519 public key. */
  signingKey: Uint8Array;
  /** X25519 private key. */
  dhPrivateKey: Uint8Array;
  /** X25519 public key. */
  dhKey: Uint8Array;
  dhKeySignature: Uint8Array;
}

/** The public identity of a remote device, as verified from its account's device list. */
export interface RemoteIdentity {
  signingKey: Uint8Array;
  dhKey: Uint8Array;
}

/** Draws a new identity: 32 random bytes for the Ed25519 seed, then 32 for the X25519 key. */
export async function generateLocalIdentity(provider: CryptoProvider, deviceId: number): Promise<LocalIdentity> {
  const signingSeed = provider.random(32);
  const dhPrivateKey = provider.random(32);
  const signingKey = await provider.ed25519PublicKey(signingSeed);
  const dhKey = await provider.x25519PublicKey(dhPrivateKey);
  const dhKeySignature = await provider.ed25519Sign(signingSeed, concatBytes(IDENTITY_LABEL, dhKey));
  return { deviceId, signingSeed, signingKey, dhPrivateKey, dhKey, dhKeySignature };
}

/** The public DeviceIdentity message for the device list. */
export function toDeviceIdentity(identity: LocalIdentity, name: string, addedAtMs: bigint): DeviceIdentity {
  return create(DeviceIdentitySchema, {
    deviceId: identity.deviceId,
    signingKey: identity.signingKey,
    dhKey: identity.dhKey,
    dhKeySignature: identity.dhKeySignature,
    name,
    addedAtMs,
  });
}

/** True when dh_key_signature binds dh_key to signing_key. */
export async function verifyDhKeySignature(provider: CryptoProvider, signingKey: Uint8Array, dhKey: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (dhKey.length !== 32) return false;
  return await provider.ed25519Verify(signingKey, concatBytes(IDENTITY_LABEL, dhKey), signature);
}

/** Throws InvalidSignatureError unless the DeviceIdentity is self-consistent. */
export async function assertDeviceIdentity(provider: CryptoProvider, identity: DeviceIdentity): Promise<RemoteIdentity> {
  if (!(await verifyDhKeySignature(provider, identity.signingKey, identity.dhKey, identity.dhKeySignature))) {
    throw new InvalidSignatureError(`device ${identity.deviceId}: dh_key_signature does not verify`);
  }
  return { signingKey: identity.signingKey, dhKey: identity.dhKey };
}
