/**
 * Verifying an account's device list against its signature chain, from a version the client
 * already trusts (or from version 1 on first contact). A server that injects a device, drops
 * a revocation, rewrites history, forks the list or rolls it back is caught here:
 *
 * - version 1: exactly one device, signed by itself;
 * - every later version: version + 1, previous_hash = SHA-256(previous device_list bytes),
 *   same account, signed by a device listed in the previous version, adds exactly one device
 *   or removes exactly one without changing any remaining entry, never reuses a device id;
 * - devices are listed in strictly ascending id order (so no id appears twice);
 * - every listed device's dh_key is bound to its signing key (dh_key_signature);
 * - the chain ends exactly at the current list the server returned.
 */
import type { DeviceIdentity, DeviceList, SignedDeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { bytesEqual, concatBytes } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { parseDeviceList } from "./device-list-changes.js";
import { IDENTITY_LABEL, deviceListSignedBytes } from "./labels.js";

export type DeviceListProblem =
  | "malformed"
  | "wrong-account"
  | "bad-signature"
  | "unknown-signer"
  | "broken-chain"
  | "bad-first-version"
  | "rollback"
  | "fork"
  | "illegal-change";

/** The device list failed verification; `problem` says how, the message says where. */
export class DeviceListVerificationError extends Error {
  override name = "DeviceListVerificationError";
  constructor(
    readonly problem: DeviceListProblem,
    message: string,
  ) {
    super(message);
  }
}

export interface VerifiedDeviceList {
  signed: SignedDeviceList;
  list: DeviceList;
}

export interface ChainInput {
  accountId: string;
  /** The newest version the client already trusts; undefined on first contact. */
  trusted?: SignedDeviceList;
  /** GetDeviceList history after trusted's version (after 0 when there is none), oldest first. */
  history: SignedDeviceList[];
  /** GetDeviceList device_list. */
  current: SignedDeviceList;
}

function parse(signed: SignedDeviceList, what: string): DeviceList {
  try {
    return parseDeviceList(signed);
  } catch {
    throw new DeviceListVerificationError("malformed", `${what}: device_list does not parse`);
  }
}

async function checkIdentities(provider: CryptoProvider, list: DeviceList, only?: Set<number>): Promise<void> {
  for (const d of list.devices) {
    if (only && !only.has(d.deviceId)) continue;
    if (
      d.signingKey.length !== 32 ||
      d.dhKey.length !== 32 ||
      !(await provider.ed25519Verify(d.signingKey, concatBytes(IDENTITY_LABEL, d.dhKey), d.dhKeySignature))
    ) {
      throw new DeviceListVerificationError("bad-signature", `version ${list.version}: device ${d.deviceId}'s dh_key_signature does not verify`);
    }
  }
}

async function checkSignature(provider: CryptoProvider, signed: SignedDeviceList, signer: DeviceIdentity, version: bigint): Promise<void> {
  if (!(await provider.ed25519Verify(signer.signingKey, deviceListSignedBytes(signed.deviceList), signed.signature))) {
    throw new DeviceListVerificationError("bad-signature", `version ${version}: signature by device ${signer.deviceId} does not verify`);
  }
}

function sameIdentity(a: DeviceIdentity, b: DeviceIdentity): boolean {
  return (
    bytesEqual(a.signingKey, b.signingKey) &&
    bytesEqual(a.dhKey, b.dhKey) &&
    bytesEqual(a.dhKeySignature, b.dhKeySignature) &&
    a.name === b.name &&
    a.addedAtMs === b.addedAtMs
  );
}

/** Devices must be listed by strictly ascending id (docs/PROTOCOL.md, "Device list"). */
function checkOrder(list: DeviceList): void {
  for (let i = 1; i < list.devices.length; i++) {
    if (list.devices[i].deviceId <= list.devices[i - 1].deviceId) {
      throw new DeviceListVerificationError(
        "illegal-change",
        `version ${list.version}: devices are not ordered by strictly ascending id (${list.devices[i - 1].deviceId} before ${list.devices[i].deviceId})`,
      );
    }
  }
}

/** Checks version 1 of an account. */
export async function verifyFirstVersion(provider: CryptoProvider, accountId: string, signed: SignedDeviceList): Promise<VerifiedDeviceList> {
  const list = parse(signed, "version 1");
  if (list.accountId !== accountId) throw new DeviceListVerificationError("wrong-account", `list is for account ${list.accountId}, expected ${accountId}`);
  if (list.version !== 1n || list.devices.length !== 1 || list.previousHash.length !== 0) {
    throw new DeviceListVerificationError(
      "bad-first-version",
      `the chain must start at version 1 with one device and no previous_hash (got version ${list.version}, ${list.devices.length} devices)`,
    );
  }
  const first = list.devices[0];
  if (signed.signerDeviceId !== first.deviceId)
    throw new DeviceListVerificationError("unknown-signer", `version 1 must be signed by its device ${first.deviceId}`);
  await checkIdentities(provider, list);
  await checkSignature(provider, signed, first, 1n);
  return { signed, list };
}

/** Checks that `signed` is a valid successor of the trusted `prev`. */
export async function verifySuccessor(provider: CryptoProvider, prev: VerifiedDeviceList, signed: SignedDeviceList): Promise<VerifiedDeviceList> {
  const p = prev.list;
  const list = parse(signed, `version after ${p.version}`);
  const v = list.version;
  if (list.accountId !== p.accountId)
    throw new DeviceListVerificationError("wrong-account", `version ${v} is for account ${list.accountId}, expected ${p.accountId}`);
  if (v !== p.version + 1n) throw new DeviceListVerificationError("broken-chain", `version ${v} does not follow version ${p.version}`);
  if (!bytesEqual(list.previousHash, provider.sha256(prev.signed.deviceList))) {
    throw new DeviceListVerificationError("broken-chain", `version ${v}: previous_hash does not match version ${p.version}`);
  }
  const signer = p.devices.find((d) => d.deviceId === signed.signerDeviceId);
  if (!signer) throw new DeviceListVerificationError("unknown-signer", `version ${v}: signer device ${signed.signerDeviceId} is not in version ${p.version}`);
  await checkSignature(provider, signed, signer, v);
  checkOrder(list);
  const before = new Map(p.devices.map((d) => [d.deviceId, d]));
  const added = new Set<number>();
  for (const d of list.devices) {
    const old = before.get(d.deviceId);
    if (old) {
      if (!sameIdentity(old, d)) throw new DeviceListVerificationError("illegal-change", `version ${v}: device ${d.deviceId}'s keys changed in place`);
    } else {
      if (d.deviceId < p.nextDeviceId) throw new DeviceListVerificationError("illegal-change", `version ${v}: device id ${d.deviceId} reused`);
      added.add(d.deviceId);
    }
  }
  if (list.devices.length === 0) throw new DeviceListVerificationError("illegal-change", `version ${v} lists no device`);
  const removed = p.devices.length - (list.devices.length - added.size);
  if (added.size + removed !== 1) {
    throw new DeviceListVerificationError(
      "illegal-change",
      `version ${v} adds ${added.size} and removes ${removed} devices; a change adds or removes exactly one`,
    );
  }
  if (list.nextDeviceId < p.nextDeviceId || list.devices.some((d) => d.deviceId >= list.nextDeviceId)) {
    throw new DeviceListVerificationError("illegal-change", `version ${v}: next_device_id ${list.nextDeviceId} is inconsistent`);
  }
  await checkIdentities(provider, list, added);
  return { signed, list };
}

/** Verifies `current` through `history` from `trusted` (or from version 1). Throws DeviceListVerificationError. */
export async function verifyDeviceListChain(provider: CryptoProvider, input: ChainInput): Promise<VerifiedDeviceList> {
  const currentList = parse(input.current, "current");
  let at: VerifiedDeviceList | undefined;
  let rest = input.history;
  if (input.trusted) {
    at = { signed: input.trusted, list: parse(input.trusted, "trusted") };
    if (at.list.accountId !== input.accountId) throw new DeviceListVerificationError("wrong-account", `trusted list is for account ${at.list.accountId}`);
    if (currentList.version < at.list.version) {
      throw new DeviceListVerificationError("rollback", `server returned version ${currentList.version}, older than the trusted version ${at.list.version}`);
    }
  } else {
    if (rest.length === 0) throw new DeviceListVerificationError("bad-first-version", "first contact needs the whole history (history_after_version = 0)");
    at = await verifyFirstVersion(provider, input.accountId, rest[0]);
    rest = rest.slice(1);
  }
  for (const signed of rest) at = await verifySuccessor(provider, at, signed);
  if (!bytesEqual(at.signed.deviceList, input.current.deviceList)) {
    const problem = parse(at.signed, "chain end").version === currentList.version ? "fork" : "broken-chain";
    throw new DeviceListVerificationError(
      problem,
      `the history ends at version ${at.list.version}, which is not the current list (version ${currentList.version})`,
    );
  }
  return { signed: input.current, list: currentList };
}
