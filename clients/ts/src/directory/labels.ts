/**
 * Signature labels and signed byte layouts of the directory (proto comments of
 * sealpost.directory.v1; docs/PROTOCOL.md "Device lists and authentication").
 */
import { concatBytes, u32be, utf8 } from "../crypto/bytes.js";

/** Ed25519 over label || SignedDeviceList.device_list. */
export const DEVICE_LIST_LABEL = utf8("sealpost.device-list.v1");
/** Ed25519 over label || u8(len(account_id)) || account_id || u32be(device_id) || nonce. */
export const AUTH_LABEL = utf8("sealpost.auth.v1");
/** Ed25519 over label || dh_key (DeviceIdentity.dh_key_signature): one definition, in protocol/labels.ts. */
export { IDENTITY_LABEL } from "../protocol/labels.js";

export function deviceListSignedBytes(deviceList: Uint8Array): Uint8Array {
  return concatBytes(DEVICE_LIST_LABEL, deviceList);
}

export function authSignedBytes(accountId: string, deviceId: number, nonce: Uint8Array): Uint8Array {
  const id = utf8(accountId);
  if (id.length > 255) throw new RangeError("account id longer than 255 bytes");
  return concatBytes(AUTH_LABEL, Uint8Array.of(id.length), id, u32be(deviceId), nonce);
}
