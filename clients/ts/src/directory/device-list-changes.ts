/**
 * Building and signing device-list versions: the first version of a new account, linking a
 * device, revoking a device. Each new version is version + 1, chains the SHA-256 of the
 * previous version's signed bytes, and is signed by a device of the previous version (the
 * first by its only device). Pure functions: the caller sends the result with LinkDevice etc.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  DeviceIdentitySchema,
  DeviceListSchema,
  SignedDeviceListSchema,
  type DeviceIdentity,
  type DeviceList,
  type SignedDeviceList,
} from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { generateLocalIdentity } from "../protocol/identity.js";
import { deviceListSignedBytes } from "./labels.js";

/** The private half a device signs list changes with. */
export interface DeviceSigner {
  deviceId: number;
  /** Ed25519 seed (private, 32 bytes). */
  signingSeed: Uint8Array;
}

/** The public keys a new device shows to be linked (the content of a LinkCode). */
export interface NewDeviceKeys {
  signingKey: Uint8Array;
  dhKey: Uint8Array;
  dhKeySignature: Uint8Array;
  name: string;
}

/** A freshly generated device identity: private seeds plus the public keys to publish. */
export interface GeneratedDeviceKeys extends NewDeviceKeys {
  signingSeed: Uint8Array;
  dhPrivateKey: Uint8Array;
}

/**
 * Draws a signing seed and an X25519 key, and binds them with dh_key_signature
 * (generateLocalIdentity, before the device has an id).
 */
export async function generateDeviceKeys(provider: CryptoProvider, name: string): Promise<GeneratedDeviceKeys> {
  const { signingSeed, dhPrivateKey, signingKey, dhKey, dhKeySignature } = await generateLocalIdentity(provider, 0);
  return { signingSeed, dhPrivateKey, signingKey, dhKey, dhKeySignature, name };
}

/** Serializes and signs a list; the signed bytes are exactly what is stored and verified. */
export async function signDeviceList(provider: CryptoProvider, list: DeviceList, signer: DeviceSigner): Promise<SignedDeviceList> {
  const deviceList = toBinary(DeviceListSchema, list);
  return create(SignedDeviceListSchema, {
    deviceList,
    signerDeviceId: signer.deviceId,
    signature: await provider.ed25519Sign(signer.signingSeed, deviceListSignedBytes(deviceList)),
  });
}

/** Parses the signed bytes of a SignedDeviceList (never a re-serialization). */
export function parseDeviceList(signed: SignedDeviceList): DeviceList {
  return fromBinary(DeviceListSchema, signed.deviceList);
}

function identity(deviceId: number, keys: NewDeviceKeys, addedAtMs: number): DeviceIdentity {
  return create(DeviceIdentitySchema, {
    deviceId,
    signingKey: keys.signingKey,
    dhKey: keys.dhKey,
    dhKeySignature: keys.dhKeySignature,
    name: keys.name,
    addedAtMs: BigInt(addedAtMs),
  });
}

/** Version 1 of a new account: the first device (id `deviceId`, default 1) signs itself. */
export async function createFirstDeviceList(
  provider: CryptoProvider,
  opts: { accountId: string; device: GeneratedDeviceKeys; deviceId?: number; nowMs: number },
): Promise<SignedDeviceList> {
  const deviceId = opts.deviceId ?? 1;
  const list = create(DeviceListSchema, {
    accountId: opts.accountId,
    version: 1n,
    devices: [identity(deviceId, opts.device, opts.nowMs)],
    previousHash: new Uint8Array(0),
    nextDeviceId: deviceId + 1,
    createdAtMs: BigInt(opts.nowMs),
  });
  return signDeviceList(provider, list, { deviceId, signingSeed: opts.device.signingSeed });
}

function nextVersion(provider: CryptoProvider, current: SignedDeviceList, devices: DeviceIdentity[], nextDeviceId: number, nowMs: number): DeviceList {
  const cur = parseDeviceList(current);
  return create(DeviceListSchema, {
    accountId: cur.accountId,
    version: cur.version + 1n,
    devices: [...devices].sort((a, b) => a.deviceId - b.deviceId),
    previousHash: provider.sha256(current.deviceList),
    nextDeviceId,
    createdAtMs: BigInt(nowMs),
  });
}

/**
 * The change that links a new device, signed by `signer` (a device of `current`). The new
 * device gets the next unused id.
 */
export async function linkDeviceChange(
  provider: CryptoProvider,
  current: SignedDeviceList,
  signer: DeviceSigner,
  newDevice: NewDeviceKeys,
  nowMs: number,
): Promise<{ deviceList: SignedDeviceList; deviceId: number }> {
  const cur = parseDeviceList(current);
  const deviceId = cur.nextDeviceId;
  const list = nextVersion(provider, current, [...cur.devices, identity(deviceId, newDevice, nowMs)], deviceId + 1, nowMs);
  return { deviceList: await signDeviceList(provider, list, signer), deviceId };
}

/** The change that removes `deviceId`, signed by `signer` (a device of `current`, possibly the one removed). */
export async function revokeDeviceChange(
  provider: CryptoProvider,
  current: SignedDeviceList,
  signer: DeviceSigner,
  deviceId: number,
  nowMs: number,
): Promise<SignedDeviceList> {
  const cur = parseDeviceList(current);
  if (!cur.devices.some((d) => d.deviceId === deviceId)) throw new RangeError(`device ${deviceId} is not in version ${cur.version}`);
  const list = nextVersion(
    provider,
    current,
    cur.devices.filter((d) => d.deviceId !== deviceId),
    cur.nextDeviceId,
    nowMs,
  );
  return signDeviceList(provider, list, signer);
}
