/**
 * Accounts' signed device lists in JetStream KV.
 *
 * - sp_accounts, key <account>: the current SignedDeviceList. Created with kv.create (one
 *   winner per account id) and replaced with revision CAS (kv.update), so two instances
 *   committing changes to one account concurrently cannot both win.
 * - sp_device_list_history, key <account>.<version>: every superseded version. Before the CAS
 *   that replaces version N, version N is written to history; every racer writes the same
 *   bytes (the value they all read), so a lost race leaves nothing wrong behind, and history
 *   holds every version below the current one even if an instance dies mid-change. After a
 *   successful CAS the new version is written too (best effort; the next change rewrites it).
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { KV } from "@nats-io/kv";
import { SignedDeviceListSchema, type SignedDeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { DeviceListSchema } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import type { ParsedDeviceList } from "./device-list-rules.js";

export interface StoredDeviceList extends ParsedDeviceList {
  /** KV revision of the current-list entry, for CAS. */
  revision: number;
}

export function decodeStored(bytes: Uint8Array): ParsedDeviceList {
  // Copied (Buffer's slice() would not copy): decoded bytes fields are views into their input,
  // and a KV value is a view into the NATS client's read buffer (up to 64 KiB), which a list
  // kept in the cache would pin.
  const signed = fromBinary(SignedDeviceListSchema, new Uint8Array(bytes));
  return { signed, list: fromBinary(DeviceListSchema, signed.deviceList) };
}

export class DeviceListStore {
  constructor(
    private readonly accounts: KV,
    private readonly history: KV,
  ) {}

  async current(accountId: string): Promise<StoredDeviceList | undefined> {
    const e = await this.accounts.get(accountId);
    if (e?.operation !== "PUT" || e.value.length === 0) return undefined;
    return { ...decodeStored(e.value), revision: e.revision };
  }

  /** Stores version 1; false when the account id is taken. */
  async create(first: ParsedDeviceList): Promise<boolean> {
    try {
      await this.accounts.create(first.list.accountId, toBinary(SignedDeviceListSchema, first.signed));
      return true;
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  /** Replaces `current` by `next` if nobody else did first: the new revision, or false on a lost race. */
  async commit(current: StoredDeviceList, next: ParsedDeviceList): Promise<number | false> {
    const accountId = current.list.accountId;
    await this.history.put(historyKey(accountId, current.list.version), toBinary(SignedDeviceListSchema, current.signed));
    const nextBytes = toBinary(SignedDeviceListSchema, next.signed);
    let revision: number;
    try {
      revision = await this.accounts.update(accountId, nextBytes, current.revision);
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
    await this.history.put(historyKey(accountId, next.list.version), nextBytes).catch(() => {});
    return revision;
  }

  /** Versions after `afterVersion`, oldest first, ending with `current`. */
  async historyAfter(current: StoredDeviceList, afterVersion: bigint, maxVersions: number): Promise<SignedDeviceList[]> {
    const accountId = current.list.accountId;
    const last = current.list.version;
    if (afterVersion >= last) return [];
    const count = last - afterVersion;
    if (count > BigInt(maxVersions)) {
      throw new ConnectError(
        `history after version ${afterVersion} has ${count} versions; at most ${maxVersions} per request (ask from version ${last - BigInt(maxVersions)} or later)`,
        Code.OutOfRange,
      );
    }
    const versions: bigint[] = [];
    for (let v = afterVersion + 1n; v < last; v++) versions.push(v);
    const older = await Promise.all(
      versions.map(async (v) => {
        const e = await this.history.get(historyKey(accountId, v));
        if (e?.operation !== "PUT") throw new ConnectError(`device list history of ${accountId} lacks version ${v}`, Code.DataLoss);
        return fromBinary(SignedDeviceListSchema, e.value);
      }),
    );
    return [...older, current.signed];
  }
}

export const historyKey = (accountId: string, version: bigint) => `${accountId}.${version}`;

/** The JetStream error for a failed expected-last-subject-sequence check (CAS). */
export function isWrongSequence(err: unknown): boolean {
  return (
    /wrong last sequence|10071/i.test(String((err as Error)?.message ?? err)) || (err as { api_error?: { err_code?: number } })?.api_error?.err_code === 10071
  );
}
