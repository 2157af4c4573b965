/**
 * A group's stored record and verified state, read and changed without I/O of its own: the
 * app's view (GroupInfo), the current and previous versions, the members to address, and the
 * sender keys forgotten when a member goes or this device leaves.
 */
import { create } from "@bufbuild/protobuf";
import type { Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { GroupControlSchema, GroupRole, type SignedGroupState } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { toHex } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { parseAddressKey, type DeviceRef } from "../protocol/address.js";
import { groupContent, type GroupCipher } from "../protocol/group-cipher.js";
import { decodeSignedGroupState, parseSignedGroupState, type VerifiedGroupState } from "../protocol/group-state.js";
import type { GroupRecord, GroupStores } from "../store/group-interfaces.js";

/** A group as the app sees it. */
export interface GroupInfo {
  /** Group id, hex. */
  groupId: string;
  title: string;
  version: number;
  members: { accountId: string; admin: boolean }[];
  adminsOnlyMessages: boolean;
  /** False once this account left or was removed. */
  active: boolean;
}

export function groupIdOf(signed: SignedGroupState): string | undefined {
  try {
    return toHex(parseSignedGroupState(signed).groupId);
  } catch {
    return undefined;
  }
}

export function versionOf(signed: SignedGroupState): bigint {
  try {
    return parseSignedGroupState(signed).version;
  } catch {
    return 0n;
  }
}

export function hexId(groupId: string | Uint8Array): string {
  return typeof groupId === "string" ? groupId.toLowerCase() : toHex(groupId);
}

export function others(accounts: Iterable<string>, me: string): string[] {
  return [...new Set(accounts)].filter((a) => a !== me).sort();
}

export function verifiedFromBytes(provider: CryptoProvider, bytes: Uint8Array): VerifiedGroupState {
  const signed = decodeSignedGroupState(bytes);
  return { signed, state: parseSignedGroupState(signed), hash: provider.sha256(signed.state) };
}

/** The stored (already verified) current version. */
export function currentOf(provider: CryptoProvider, record: GroupRecord): VerifiedGroupState {
  return verifiedFromBytes(provider, record.signedState);
}

export function signerOf(v: VerifiedGroupState): DeviceRef {
  return { accountId: v.signed.signer!.accountId, deviceId: v.signed.signer!.deviceId };
}

export function emptyState() {
  return { members: [], title: "", adminsOnlyMessages: false } as unknown as VerifiedGroupState["state"];
}

export function toInfo(record: GroupRecord, v: VerifiedGroupState): GroupInfo {
  return {
    groupId: toHex(record.groupId),
    title: v.state.title,
    version: Number(v.state.version),
    members: v.state.members.map((m) => ({ accountId: m.accountId, admin: m.role === GroupRole.ADMIN })),
    adminsOnlyMessages: v.state.adminsOnlyMessages,
    active: record.active,
  };
}

/** GroupControl content (a state update, or a leave) for the group's members. */
export function controlContent(
  groupId: Uint8Array,
  kind: { case: "update"; value: SignedGroupState } | { case: "leave"; value: { groupId: Uint8Array } },
  nowMs: number,
): Content {
  return groupContent(groupId, { sentAtMs: BigInt(nowMs), body: { case: "groupControl", value: create(GroupControlSchema, { kind }) } });
}

/** Forgets every sender key of `accountId`'s devices in the group (a member removed or gone). */
export async function forgetSender(cipher: GroupCipher, record: GroupRecord, accountId: string): Promise<void> {
  for (const [who, dists] of Object.entries(record.senderKeys)) {
    if (!who.startsWith(`${accountId}.`)) continue;
    const deviceId = Number(who.slice(accountId.length + 1));
    for (const d of dists) await cipher.forget({ accountId, deviceId }, d);
    delete record.senderKeys[who];
  }
}

/** This device is out of the group: every sender key (its own too) is forgotten, the record kept inactive. */
export async function deactivate(cipher: GroupCipher, stores: GroupStores, id: string, nowMs: number): Promise<void> {
  const record = await stores.groups.load(id);
  if (!record) return;
  for (const [who, dists] of Object.entries(record.senderKeys)) {
    for (const d of dists) await cipher.forget(parseAddressKey(who), d);
  }
  await cipher.forgetOwn(record.groupId);
  record.senderKeys = {};
  record.distributedTo = [];
  record.active = false;
  record.updatedAtMs = nowMs;
  await stores.groups.save(id, record);
}
