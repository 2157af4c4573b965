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

/** Key transparency: a log leaf's account index is SHA-256(label || account_id). */
export const KT_INDEX_LABEL = utf8("sealpost.kt.index.v1");
/** Ed25519 by the log key over label || u64be(tree_size) || root_hash || u64be(timestamp_ms). */
export const KT_TREE_HEAD_LABEL = utf8("sealpost.kt.tree-head.v1");

function u64be(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n);
  return b;
}

export function treeHeadSignedBytes(treeSize: bigint, rootHash: Uint8Array, timestampMs: bigint): Uint8Array {
  return concatBytes(KT_TREE_HEAD_LABEL, u64be(treeSize), rootHash, u64be(timestampMs));
}

/** A log leaf: account_index (32) || u64be(version) || list_hash (32). */
export function transparencyLeaf(accountIndex: Uint8Array, version: bigint, listHash: Uint8Array): Uint8Array {
  return concatBytes(accountIndex, u64be(version), listHash);
}
