/**
 * Pure validation of signed device lists: the first version (CreateAccount) and each change
 * (LinkDevice, RevokeDevice). No I/O; every violation is a ConnectError with the code the
 * schema prescribes and a message naming what was wrong.
 *
 * A change must: name the caller's account, have version = current + 1 and previous_hash =
 * SHA-256(current device_list bytes), be signed by a device of the current version, keep
 * every other device entry byte-for-byte, and add (link) or remove (revoke) exactly one
 * device. Device ids are never reused: a new id must be >= the current next_device_id.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  DeviceIdentitySchema,
  DeviceListSchema,
  type DeviceIdentity,
  type DeviceList,
  type SignedDeviceList,
} from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { ACCOUNT_ID_PATTERN, KEY_BYTES, MAX_DEVICE_ID, SIGNATURE_BYTES, type DirectoryLimits } from "./limits.js";
import { DEVICE_LIST_LABEL, IDENTITY_LABEL, bytesEqual, concat, ed25519Verify, sha256 } from "./signatures.js";

/** A signed list with its parsed content (parsed from the signed bytes, never re-serialized). */
export interface ParsedDeviceList {
  signed: SignedDeviceList;
  list: DeviceList;
}

export type ChangeKind = "link" | "revoke";

export function checkAccountId(accountId: string, field = "account_id"): void {
  if (!ACCOUNT_ID_PATTERN.test(accountId)) {
    throw new ConnectError(
      `${field} ${JSON.stringify(accountId.slice(0, 80))} is invalid: 3 to 64 characters of [a-z0-9_-], starting with a letter or digit`,
      Code.InvalidArgument,
    );
  }
}

export function checkDeviceId(deviceId: number, field = "device_id"): void {
  if (!Number.isInteger(deviceId) || deviceId < 1 || deviceId > MAX_DEVICE_ID) {
    throw new ConnectError(`${field} ${deviceId} is invalid: must be 1 to 2^31-1`, Code.InvalidArgument);
  }
}

/** Parses and checks the shape of a signed list: sizes, formats, ordering, limits. */
export function parseSignedDeviceList(signed: SignedDeviceList | undefined, limits: DirectoryLimits): ParsedDeviceList {
  if (!signed) throw new ConnectError("device_list is required", Code.InvalidArgument);
  const bytes = signed.deviceList;
  if (bytes.length === 0) throw new ConnectError("device_list.device_list is empty", Code.InvalidArgument);
  if (bytes.length > limits.maxDeviceListBytes) {
    throw new ConnectError(`device_list.device_list is ${bytes.length} bytes; at most ${limits.maxDeviceListBytes}`, Code.ResourceExhausted);
  }
  if (signed.signature.length !== SIGNATURE_BYTES) {
    throw new ConnectError(`device_list.signature must be ${SIGNATURE_BYTES} bytes, got ${signed.signature.length}`, Code.InvalidArgument);
  }
  let list: DeviceList;
  try {
    list = fromBinary(DeviceListSchema, bytes);
  } catch {
    throw new ConnectError("device_list.device_list does not parse as a sealpost.directory.v1.DeviceList", Code.InvalidArgument);
  }
  checkAccountId(list.accountId, "device list account_id");
  if (list.version < 1n) throw new ConnectError("device list version must be at least 1", Code.InvalidArgument);
  if (list.devices.length === 0) throw new ConnectError("device list must hold at least one device", Code.InvalidArgument);
  if (list.devices.length > limits.maxDevicesPerAccount) {
    throw new ConnectError(
      `device list holds ${list.devices.length} devices; an account may have at most ${limits.maxDevicesPerAccount}`,
      Code.ResourceExhausted,
    );
  }
  let previous = 0;
  for (const d of list.devices) {
    checkDeviceId(d.deviceId, "device list device_id");
    if (d.deviceId <= previous)
      throw new ConnectError(
        `device list devices must be ordered by device_id without duplicates (device ${d.deviceId} after ${previous})`,
        Code.InvalidArgument,
      );
    previous = d.deviceId;
    checkIdentityShape(d, limits);
  }
  if (list.nextDeviceId <= previous || list.nextDeviceId > MAX_DEVICE_ID + 1) {
    throw new ConnectError(
      `device list next_device_id ${list.nextDeviceId} must be greater than every listed device id (${previous}) and at most 2^31`,
      Code.InvalidArgument,
    );
  }
  if (list.version === 1n ? list.previousHash.length !== 0 : list.previousHash.length !== 32) {
    throw new ConnectError(
      `device list previous_hash must be ${list.version === 1n ? "empty for version 1" : "32 bytes"}, got ${list.previousHash.length} bytes`,
      Code.InvalidArgument,
    );
  }
  return { signed, list };
}

function checkIdentityShape(d: DeviceIdentity, limits: DirectoryLimits): void {
  const at = `device ${d.deviceId}`;
  if (d.signingKey.length !== KEY_BYTES)
    throw new ConnectError(`${at}: signing_key must be ${KEY_BYTES} bytes, got ${d.signingKey.length}`, Code.InvalidArgument);
  if (d.dhKey.length !== KEY_BYTES) throw new ConnectError(`${at}: dh_key must be ${KEY_BYTES} bytes, got ${d.dhKey.length}`, Code.InvalidArgument);
  if (d.dhKeySignature.length !== SIGNATURE_BYTES) {
    throw new ConnectError(`${at}: dh_key_signature must be ${SIGNATURE_BYTES} bytes, got ${d.dhKeySignature.length}`, Code.InvalidArgument);
  }
  const nameBytes = Buffer.byteLength(d.name, "utf8");
  if (nameBytes > limits.maxDeviceNameBytes)
    throw new ConnectError(`${at}: name is ${nameBytes} bytes; at most ${limits.maxDeviceNameBytes}`, Code.InvalidArgument);
}

/** Checks that a new device's dh_key is bound to its signing key. */
function checkIdentitySignature(d: DeviceIdentity): void {
  if (!ed25519Verify(d.signingKey, concat(IDENTITY_LABEL, d.dhKey), d.dhKeySignature)) {
    throw new ConnectError(`device ${d.deviceId}: dh_key_signature does not verify under its signing_key`, Code.PermissionDenied);
  }
}

function checkListSignature(p: ParsedDeviceList, signer: DeviceIdentity): void {
  if (!ed25519Verify(signer.signingKey, concat(DEVICE_LIST_LABEL, p.signed.deviceList), p.signed.signature)) {
    throw new ConnectError(`device list signature by device ${signer.deviceId} does not verify`, Code.PermissionDenied);
  }
}

/** Version 1 of a new account: one device, signing itself. */
export function validateFirstList(p: ParsedDeviceList): DeviceIdentity {
  if (p.list.version !== 1n) throw new ConnectError(`a new account's device list must be version 1, got ${p.list.version}`, Code.InvalidArgument);
  if (p.list.devices.length !== 1)
    throw new ConnectError(`a new account's device list must hold exactly one device, got ${p.list.devices.length}`, Code.InvalidArgument);
  const device = p.list.devices[0];
  if (p.signed.signerDeviceId !== device.deviceId) {
    throw new ConnectError(`a new account's device list must be signed by its device ${device.deviceId}, not ${p.signed.signerDeviceId}`, Code.InvalidArgument);
  }
  checkIdentitySignature(device);
  checkListSignature(p, device);
  return device;
}

/**
 * Validates `next` as a change of `current` made by a caller of `callerAccount`. Returns the
 * device added (link) or removed (revoke).
 */
export function validateChange(current: ParsedDeviceList, next: ParsedDeviceList, kind: ChangeKind, callerAccount: string): DeviceIdentity {
  const cur = current.list;
  const nxt = next.list;
  if (nxt.accountId !== callerAccount) {
    throw new ConnectError(`device list is for account ${nxt.accountId}, but the caller acts for ${callerAccount}`, Code.PermissionDenied);
  }
  if (nxt.version <= cur.version) {
    throw new ConnectError(
      `device list version ${nxt.version} is not newer than the current version ${cur.version} (stale or replayed change)`,
      Code.FailedPrecondition,
    );
  }
  if (nxt.version !== cur.version + 1n) {
    throw new ConnectError(`device list version ${nxt.version} skips ahead: the next version must be ${cur.version + 1n}`, Code.FailedPrecondition);
  }
  if (!bytesEqual(nxt.previousHash, sha256(current.signed.deviceList))) {
    throw new ConnectError(`device list previous_hash does not match version ${cur.version}`, Code.FailedPrecondition);
  }
  const signer = cur.devices.find((d) => d.deviceId === next.signed.signerDeviceId);
  if (!signer) {
    throw new ConnectError(`signer device ${next.signed.signerDeviceId} is not in the current device list (version ${cur.version})`, Code.PermissionDenied);
  }
  checkListSignature(next, signer);
  if (nxt.nextDeviceId < cur.nextDeviceId) {
    throw new ConnectError(`next_device_id ${nxt.nextDeviceId} is below the current ${cur.nextDeviceId}; device ids are never reused`, Code.InvalidArgument);
  }

  const before = new Map(cur.devices.map((d) => [d.deviceId, d]));
  const after = new Map(nxt.devices.map((d) => [d.deviceId, d]));
  const added = nxt.devices.filter((d) => !before.has(d.deviceId));
  const removed = cur.devices.filter((d) => !after.has(d.deviceId));
  for (const d of nxt.devices) {
    const old = before.get(d.deviceId);
    if (old && !sameIdentity(old, d)) {
      throw new ConnectError(`device ${d.deviceId} changed its entry; a change may only add or remove a device`, Code.InvalidArgument);
    }
  }
  if (kind === "link") {
    if (removed.length !== 0 || added.length !== 1) {
      throw new ConnectError(`LinkDevice must add exactly one device and remove none (adds ${added.length}, removes ${removed.length})`, Code.InvalidArgument);
    }
    const d = added[0];
    if (d.deviceId < cur.nextDeviceId) {
      throw new ConnectError(`device id ${d.deviceId} was already allocated; ids are never reused (next is ${cur.nextDeviceId})`, Code.InvalidArgument);
    }
    checkIdentitySignature(d);
    return d;
  }
  if (added.length !== 0 || removed.length !== 1) {
    throw new ConnectError(`RevokeDevice must remove exactly one device and add none (removes ${removed.length}, adds ${added.length})`, Code.InvalidArgument);
  }
  return removed[0];
}

function sameIdentity(a: DeviceIdentity, b: DeviceIdentity): boolean {
  return bytesEqual(toBinary(DeviceIdentitySchema, a), toBinary(DeviceIdentitySchema, b));
}
