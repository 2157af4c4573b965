/**
 * Group state as a signed, versioned chain (proto/sealpost/envelope/v1/group.proto;
 * docs/PROTOCOL.md, "Groups"). Every member verifies every change:
 *
 * - version 1: previous_hash empty; the signer's account is an admin of version 1 itself
 *   (the creator);
 * - version N+1: same group_id, version + 1, previous_hash = SHA-256(state bytes of N), and
 *   the signer's account is an ADMIN of version N. Admins may change anything (members,
 *   roles, title, settings); the result must keep at least one admin. Non-admins never sign
 *   a state: a member who leaves sends GroupLeave and an admin publishes the removal;
 * - signature = Ed25519(signer device's identity signing key, "sealpost.group-state.v1" ||
 *   state), the key taken from the signer account's verified device list (a lookup the
 *   caller passes in: no I/O here);
 * - the state is canonical: members strictly ascending by account_id, roles MEMBER or ADMIN,
 *   at most 1000 members, title at most 256 bytes, and the bytes are exactly what protobuf-es
 *   writes for the parsed message (so two admins making the same change sign the same bytes,
 *   and racing identical changes are one version, not a fork).
 *
 * Forks (two different valid versions N+1) are resolved deterministically: the one whose
 * state hash is lower wins while no N+2 has been accepted (compareForks).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import {
  GroupMemberSchema,
  GroupRole,
  GroupStateSchema,
  SignedGroupStateSchema,
  type GroupMember,
  type GroupState,
  type SignedGroupState,
} from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { bytesEqual, concatBytes } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { GROUP_ID_BYTES, GROUP_STATE_LABEL, MAX_GROUP_MEMBERS, MAX_GROUP_TITLE_BYTES } from "./group-labels.js";

/** A device, by account and device id. */
export interface GroupDevice {
  accountId: string;
  deviceId: number;
}

/**
 * The Ed25519 identity signing key of a *current* device from its account's verified device
 * list, or undefined when the device is unknown or revoked.
 */
export type SigningKeyLookup = (device: GroupDevice) => Uint8Array | undefined;

export type GroupStateProblem =
  | "malformed"
  | "non-canonical"
  | "invalid-state"
  | "wrong-group"
  | "bad-first-version"
  | "stale"
  | "gap"
  | "fork"
  | "unknown-signer"
  | "bad-signature"
  | "not-admin"
  | "not-a-member";

/** A group state (or change) was rejected; `problem` says why. */
export class GroupStateError extends Error {
  override name = "GroupStateError";
  constructor(
    readonly problem: GroupStateProblem,
    message: string,
  ) {
    super(message);
  }
}

/** A verified version: the signed record, its parsed state and SHA-256 of the state bytes. */
export interface VerifiedGroupState {
  signed: SignedGroupState;
  state: GroupState;
  hash: Uint8Array;
}

const ACCOUNT_ID = /^[a-z0-9][a-z0-9_-]{2,63}$/;
const textEncoder = new TextEncoder();

/** Members in canonical order (account ids are ASCII, so code-unit order is byte order). */
export function canonicalMembers(members: { accountId: string; role: GroupRole }[]): GroupMember[] {
  return [...members]
    .sort((a, b) => (a.accountId < b.accountId ? -1 : a.accountId > b.accountId ? 1 : 0))
    .map((m) => create(GroupMemberSchema, { accountId: m.accountId, role: m.role }));
}

/** Throws GroupStateError("invalid-state") unless the state is well formed. */
export function checkStateShape(s: GroupState): void {
  const bad = (why: string) => new GroupStateError("invalid-state", why);
  if (s.groupId.length !== GROUP_ID_BYTES) throw bad("group_id must be 16 bytes");
  if (s.version < 1n) throw bad("version must be at least 1");
  if (textEncoder.encode(s.title).length > MAX_GROUP_TITLE_BYTES) throw bad("title longer than 256 bytes");
  if (s.members.length === 0) throw bad("a group has at least one member");
  if (s.members.length > MAX_GROUP_MEMBERS) throw bad("more than 1000 members");
  let admins = 0;
  for (let i = 0; i < s.members.length; i++) {
    const m = s.members[i];
    if (!ACCOUNT_ID.test(m.accountId)) throw bad(`member ${i}: malformed account_id`);
    if (i > 0 && !(s.members[i - 1].accountId < m.accountId)) throw bad("members not strictly ordered by account_id");
    if (m.role === GroupRole.ADMIN) admins++;
    else if (m.role !== GroupRole.MEMBER) throw bad(`member ${m.accountId}: role must be MEMBER or ADMIN`);
  }
  if (admins === 0) throw bad("a group keeps at least one admin");
  if (s.version === 1n ? s.previousHash.length !== 0 : s.previousHash.length !== 32) throw bad("previous_hash must be empty at version 1, else 32 bytes");
}

/** The role of an account in a state, or undefined when it is not a member. */
export function roleOf(s: GroupState, accountId: string): GroupRole | undefined {
  return s.members.find((m) => m.accountId === accountId)?.role;
}

export function isAdmin(s: GroupState, accountId: string): boolean {
  return roleOf(s, accountId) === GroupRole.ADMIN;
}

/** Serializes a state canonically (members sorted); the bytes an admin signs. */
export function encodeGroupState(fields: {
  groupId: Uint8Array;
  version: bigint;
  title: string;
  members: { accountId: string; role: GroupRole }[];
  previousHash: Uint8Array;
  adminsOnlyMessages: boolean;
}): Uint8Array {
  const state = create(GroupStateSchema, { ...fields, members: canonicalMembers(fields.members) });
  checkStateShape(state);
  return toBinary(GroupStateSchema, state);
}

/** Signs serialized state bytes with a device's identity signing seed. */
export async function signGroupState(provider: CryptoProvider, state: Uint8Array, signer: GroupDevice, signingSeed: Uint8Array): Promise<SignedGroupState> {
  return create(SignedGroupStateSchema, {
    state,
    signer: create(DeviceAddressSchema, { accountId: signer.accountId, deviceId: signer.deviceId }),
    signature: await provider.ed25519Sign(signingSeed, concatBytes(GROUP_STATE_LABEL, state)),
  });
}

/** Parses and shape-checks a SignedGroupState's state (no signature check). */
export function parseSignedGroupState(signed: SignedGroupState): GroupState {
  let state: GroupState;
  try {
    // Unknown fields are dropped so the re-encoding check below refuses them too.
    state = fromBinary(GroupStateSchema, signed.state, { readUnknownFields: false });
  } catch {
    throw new GroupStateError("malformed", "state does not parse");
  }
  if (!bytesEqual(toBinary(GroupStateSchema, state), signed.state)) throw new GroupStateError("non-canonical", "state bytes are not canonically encoded");
  checkStateShape(state);
  return state;
}

async function checkSignature(provider: CryptoProvider, signed: SignedGroupState, lookup: SigningKeyLookup): Promise<GroupDevice> {
  const s = signed.signer;
  if (!s || !ACCOUNT_ID.test(s.accountId) || s.deviceId < 1) throw new GroupStateError("malformed", "signer missing or malformed");
  const key = lookup({ accountId: s.accountId, deviceId: s.deviceId });
  if (!key) throw new GroupStateError("unknown-signer", `signer ${s.accountId}.${s.deviceId} is not a current device of its account`);
  if (signed.signature.length !== 64 || !(await provider.ed25519Verify(key, concatBytes(GROUP_STATE_LABEL, signed.state), signed.signature))) {
    throw new GroupStateError("bad-signature", "group state signature does not verify");
  }
  return { accountId: s.accountId, deviceId: s.deviceId };
}

function verified(provider: CryptoProvider, signed: SignedGroupState, state: GroupState): VerifiedGroupState {
  return { signed, state, hash: provider.sha256(signed.state) };
}

/** Verifies version 1 of a group (the creator's state). */
export async function verifyGenesis(provider: CryptoProvider, signed: SignedGroupState, lookup: SigningKeyLookup): Promise<VerifiedGroupState> {
  const state = parseSignedGroupState(signed);
  if (state.version !== 1n) throw new GroupStateError("bad-first-version", "the first version of a group is 1");
  const signer = await checkSignature(provider, signed, lookup);
  if (!isAdmin(state, signer.accountId)) throw new GroupStateError("not-admin", "version 1 must be signed by an admin it lists (the creator)");
  return verified(provider, signed, state);
}

/**
 * A state first seen by a device that joins at version N (it was added, or is a new device of
 * a member): the history before N is not available, so the state is accepted when it is
 * signed by a current device of an account that is an admin in N itself and it lists
 * `selfAccountId`. This trusts the admin who added us (delivered over their pairwise session),
 * as a joiner of a Signal group trusts the group state it is given; every later change is
 * verified against it in full.
 */
export async function verifyFirstSeen(
  provider: CryptoProvider,
  signed: SignedGroupState,
  lookup: SigningKeyLookup,
  selfAccountId: string,
): Promise<VerifiedGroupState> {
  const state = parseSignedGroupState(signed);
  const signer = await checkSignature(provider, signed, lookup);
  if (!isAdmin(state, signer.accountId)) throw new GroupStateError("not-admin", "signer is not an admin of the state");
  if (roleOf(state, selfAccountId) === undefined) throw new GroupStateError("not-a-member", "this account is not a member of that state");
  return verified(provider, signed, state);
}

/**
 * Verifies version N+1 against the verified version N. Throws GroupStateError: "stale" (not
 * newer), "gap" (skips versions), "wrong-group", "fork" (previous_hash is not N's),
 * "unknown-signer", "bad-signature", "not-admin" (signer's account is not an admin of N),
 * "invalid-state"/"non-canonical"/"malformed".
 */
export async function verifyGroupStateUpdate(
  provider: CryptoProvider,
  current: VerifiedGroupState,
  next: SignedGroupState,
  lookup: SigningKeyLookup,
): Promise<VerifiedGroupState> {
  const state = parseSignedGroupState(next);
  if (!bytesEqual(state.groupId, current.state.groupId)) throw new GroupStateError("wrong-group", "state belongs to another group");
  if (state.version <= current.state.version) throw new GroupStateError("stale", `version ${state.version} is not newer than ${current.state.version}`);
  if (state.version !== current.state.version + 1n) throw new GroupStateError("gap", `version ${state.version} does not follow ${current.state.version}`);
  if (!bytesEqual(state.previousHash, current.hash)) throw new GroupStateError("fork", "previous_hash is not the hash of the current version");
  const signer = await checkSignature(provider, next, lookup);
  // Admin-only: every change, including removing oneself, is signed by an admin of N.
  if (!isAdmin(current.state, signer.accountId))
    throw new GroupStateError("not-admin", `${signer.accountId} is not an admin of version ${current.state.version}`);
  return verified(provider, next, state);
}

/** Verifies a whole chain from version 1, oldest first; returns the last version. */
export async function verifyGroupStateChain(provider: CryptoProvider, chain: SignedGroupState[], lookup: SigningKeyLookup): Promise<VerifiedGroupState> {
  if (chain.length === 0) throw new GroupStateError("malformed", "empty chain");
  let v = await verifyGenesis(provider, chain[0], lookup);
  for (let i = 1; i < chain.length; i++) v = await verifyGroupStateUpdate(provider, v, chain[i], lookup);
  return v;
}

/**
 * Fork choice between two verified versions with the same number and predecessor: the lower
 * SHA-256 of the state bytes wins (negative: `a` wins). Every member picks the same one
 * whatever order they arrived in, as long as neither has a successor yet.
 */
export function compareForks(a: VerifiedGroupState, b: VerifiedGroupState): number {
  for (let i = 0; i < 32; i++) if (a.hash[i] !== b.hash[i]) return a.hash[i] - b.hash[i];
  return 0;
}

/** A change an admin proposes. */
export interface GroupChange {
  title?: string;
  add?: string[];
  remove?: string[];
  promote?: string[];
  demote?: string[];
  adminsOnlyMessages?: boolean;
}

/** Thrown when a proposed change does not apply (adding a member twice, removing a stranger...). */
export class GroupChangeError extends Error {
  override name = "GroupChangeError";
}

/**
 * The serialized state N+1 that applies `change` to `current`. Added accounts join as
 * MEMBER. Throws GroupChangeError for changes that do not apply and GroupStateError when the
 * result is invalid (e.g. no admin left).
 */
export function applyGroupChange(current: VerifiedGroupState, change: GroupChange): Uint8Array {
  const members = new Map(current.state.members.map((m) => [m.accountId, m.role]));
  for (const a of change.remove ?? []) if (!members.delete(a)) throw new GroupChangeError(`${a} is not a member`);
  for (const a of change.add ?? []) {
    if (members.has(a)) throw new GroupChangeError(`${a} is already a member`);
    members.set(a, GroupRole.MEMBER);
  }
  for (const a of change.promote ?? []) {
    if (!members.has(a)) throw new GroupChangeError(`${a} is not a member`);
    members.set(a, GroupRole.ADMIN);
  }
  for (const a of change.demote ?? []) {
    if (!members.has(a)) throw new GroupChangeError(`${a} is not a member`);
    members.set(a, GroupRole.MEMBER);
  }
  return encodeGroupState({
    groupId: current.state.groupId,
    version: current.state.version + 1n,
    title: change.title ?? current.state.title,
    members: [...members].map(([accountId, role]) => ({ accountId, role })),
    previousHash: current.hash,
    adminsOnlyMessages: change.adminsOnlyMessages ?? current.state.adminsOnlyMessages,
  });
}

/** What changed between two states (accounts, sorted). */
export interface GroupStateDiff {
  added: string[];
  removed: string[];
  promoted: string[];
  demoted: string[];
  titleChanged: boolean;
  settingsChanged: boolean;
}

export function diffGroupStates(before: GroupState, after: GroupState): GroupStateDiff {
  const b = new Map(before.members.map((m) => [m.accountId, m.role]));
  const a = new Map(after.members.map((m) => [m.accountId, m.role]));
  const d: GroupStateDiff = {
    added: [],
    removed: [],
    promoted: [],
    demoted: [],
    titleChanged: before.title !== after.title,
    settingsChanged: before.adminsOnlyMessages !== after.adminsOnlyMessages,
  };
  for (const [id, role] of a) {
    const old = b.get(id);
    if (old === undefined) d.added.push(id);
    else if (old !== role) (role === GroupRole.ADMIN ? d.promoted : d.demoted).push(id);
  }
  for (const id of b.keys()) if (!a.has(id)) d.removed.push(id);
  for (const list of [d.added, d.removed, d.promoted, d.demoted]) list.sort();
  return d;
}

/** Serialized SignedGroupState (for stores and control messages). */
export function encodeSignedGroupState(s: SignedGroupState): Uint8Array {
  return toBinary(SignedGroupStateSchema, s);
}

export function decodeSignedGroupState(bytes: Uint8Array): SignedGroupState {
  try {
    return fromBinary(SignedGroupStateSchema, bytes);
  } catch {
    throw new GroupStateError("malformed", "signed group state does not parse");
  }
}
