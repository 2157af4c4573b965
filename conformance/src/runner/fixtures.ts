/**
 * Key material and signed structures the cases need, built exactly as the schema's comments
 * specify (proto/sealpost/directory/v1/*.proto). The suite plays an honest client here: the
 * server under test verifies these signatures, so they must be right.
 */
import { fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { randomBytes } from "node:crypto";
import { DeviceListSchema } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { asBytes, concat, toBase64, u32be, utf8 } from "./bytes.js";

export const labels = {
  identity: "sealpost.identity.v1",
  deviceList: "sealpost.device-list.v1",
  signedPrekey: "sealpost.signed-prekey.v1",
  kemPrekey: "sealpost.kem-prekey.v1",
  auth: "sealpost.auth.v1",
} as const;

export function random(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

export interface OneTimePrekey {
  key_id: number;
  public_key: Uint8Array;
}

export interface SignedKey {
  key_id: number;
  public_key: Uint8Array;
  signature: Uint8Array;
}

/** A device's private and public material, as a case variable. */
export interface Identity {
  kind: "identity";
  signing_seed: Uint8Array;
  signing_key: Uint8Array;
  dh_key: Uint8Array;
  dh_key_signature: Uint8Array;
  signed_prekey: SignedKey;
  kem_prekey: SignedKey;
  one_time_prekeys: OneTimePrekey[];
}

export function sign(identity: Identity, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, identity.signing_seed);
}

export function signedPrekey(identity: Identity, keyId: number): SignedKey {
  const public_key = x25519.getPublicKey(random(32));
  return { key_id: keyId, public_key, signature: sign(identity, concat(utf8(labels.signedPrekey), u32be(keyId), public_key)) };
}

export function kemPrekey(identity: Identity, keyId: number): SignedKey {
  const public_key = ml_kem768.keygen(random(64)).publicKey;
  return { key_id: keyId, public_key, signature: sign(identity, concat(utf8(labels.kemPrekey), u32be(keyId), public_key)) };
}

export function oneTimePrekeys(count: number, startId: number): OneTimePrekey[] {
  return Array.from({ length: count }, (_, i) => ({ key_id: startId + i, public_key: x25519.getPublicKey(random(32)) }));
}

export function newIdentity(oneTimeCount = 5): Identity {
  const signing_seed = random(32);
  const dh_key = x25519.getPublicKey(random(32));
  const partial = { kind: "identity" as const, signing_seed, signing_key: ed25519.getPublicKey(signing_seed), dh_key } as Identity;
  partial.dh_key_signature = sign(partial, concat(utf8(labels.identity), dh_key));
  partial.signed_prekey = signedPrekey(partial, 1);
  partial.kem_prekey = kemPrekey(partial, 1);
  partial.one_time_prekeys = oneTimePrekeys(oneTimeCount, 1);
  return partial;
}

export function authSignature(identity: Identity, accountId: string, deviceId: number, nonce: Uint8Array): Uint8Array {
  const account = utf8(accountId);
  return sign(identity, concat(utf8(labels.auth), new Uint8Array([account.length]), account, u32be(deviceId), nonce));
}

/** One device entry of an account context. */
export interface ListedDevice {
  device_id: number;
  identity: Identity;
  name: string;
  added_at_ms: number;
}

/** What the suite knows of an account: its current signed device list and the devices. */
export interface AccountContext {
  kind: "account";
  account_id: string;
  version: number;
  next_device_id: number;
  devices: ListedDevice[];
  /** The serialized DeviceList of this version (the signed bytes). */
  list_bytes: Uint8Array;
  /** The SignedDeviceList, ready to put in a request. */
  signed: { device_list: Uint8Array; signer_device_id: number; signature: Uint8Array };
  /** Device id of the device added by this change (when one was). */
  added_device_id?: number;
}

export interface DeviceListChange {
  /** The current list (absent for version 1). */
  from?: AccountContext;
  account_id?: string;
  add?: { identity: Identity; name?: string; device_id?: number }[];
  remove?: number[];
  /** Signing identity; default: for version 1 the added device, else the first current device. */
  signer?: Identity;
  signer_device_id?: number;
  // Overrides for negative cases:
  version?: number;
  previous_hash?: Uint8Array;
  next_device_id?: number;
  bad_signature?: boolean;
}

/** Builds the next version of a device list (or the first), serialized and signed. */
export function deviceListChange(c: DeviceListChange): AccountContext {
  const from = c.from;
  const accountId = c.account_id ?? from?.account_id;
  if (!accountId) throw new Error("device list: account_id is required for the first version");
  const now = Date.now();
  let nextId = from?.next_device_id ?? 1;
  let devices = (from?.devices ?? []).filter((d) => !(c.remove ?? []).includes(d.device_id));
  let addedId: number | undefined;
  for (const a of c.add ?? []) {
    const id = a.device_id ?? nextId;
    addedId = id;
    nextId = Math.max(nextId, id + 1);
    devices.push({ device_id: id, identity: a.identity, name: a.name ?? `device-${id}`, added_at_ms: now });
  }
  devices = devices.sort((a, b) => a.device_id - b.device_id);
  const version = c.version ?? (from?.version ?? 0) + 1;
  const previousHash = c.previous_hash ?? (from ? sha256(from.list_bytes) : new Uint8Array());
  const listJson = {
    account_id: accountId,
    version: String(version),
    devices: devices.map((d) => ({
      device_id: d.device_id,
      signing_key: toBase64(d.identity.signing_key),
      dh_key: toBase64(d.identity.dh_key),
      dh_key_signature: toBase64(d.identity.dh_key_signature),
      name: d.name,
      added_at_ms: String(d.added_at_ms),
    })),
    previous_hash: toBase64(previousHash),
    next_device_id: c.next_device_id ?? nextId,
    created_at_ms: String(now),
  };
  const listBytes = toBinary(DeviceListSchema, fromJson(DeviceListSchema, listJson as JsonValue));
  const signerDevice = c.signer
    ? [...(from?.devices ?? []), ...devices].find((d) => d.identity === c.signer)
    : from && from.devices.length > 0
      ? from.devices[0]
      : devices[0];
  const signer = c.signer ?? signerDevice?.identity;
  if (!signer) throw new Error("device list: no signer");
  let signature = sign(signer, concat(utf8(labels.deviceList), listBytes));
  if (c.bad_signature) signature = flipByte(signature);
  return {
    kind: "account",
    account_id: accountId,
    version,
    next_device_id: c.next_device_id ?? nextId,
    devices,
    list_bytes: listBytes,
    signed: { device_list: listBytes, signer_device_id: c.signer_device_id ?? signerDevice?.device_id ?? 1, signature },
    added_device_id: addedId,
  };
}

export function flipByte(b: Uint8Array): Uint8Array {
  const out = b.slice();
  out[out.length >> 1] ^= 0x01;
  return out;
}

export function sha256Of(v: unknown): Uint8Array {
  return sha256(asBytes(v, "$sha256"));
}
