/**
 * A client's cache of contacts' device lists: verified against the signature chain from the
 * cached (trusted) version, kept for a TTL, and compared on every refresh so the app can warn
 * when a contact's devices or keys change. No I/O: the caller fetches GetDeviceList with the
 * request this cache suggests and hands the response in.
 */
import type { DeviceIdentity, DeviceList, SignedDeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { bytesEqual } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { verifyDeviceListChain, type VerifiedDeviceList } from "./device-list-chain.js";

export type KeyChange =
  | { kind: "device-added"; deviceId: number; identity: DeviceIdentity }
  | { kind: "device-removed"; deviceId: number; identity: DeviceIdentity }
  | { kind: "identity-key-changed"; deviceId: number; before: DeviceIdentity; after: DeviceIdentity };

/** What changed from `before` (undefined: nothing known) to `after`, by device id. */
export function compareDeviceLists(before: DeviceList | undefined, after: DeviceList): KeyChange[] {
  if (!before) return [];
  const changes: KeyChange[] = [];
  const old = new Map(before.devices.map((d) => [d.deviceId, d]));
  const now = new Map(after.devices.map((d) => [d.deviceId, d]));
  for (const d of after.devices) {
    const o = old.get(d.deviceId);
    if (!o) changes.push({ kind: "device-added", deviceId: d.deviceId, identity: d });
    else if (!bytesEqual(o.signingKey, d.signingKey) || !bytesEqual(o.dhKey, d.dhKey)) {
      changes.push({ kind: "identity-key-changed", deviceId: d.deviceId, before: o, after: d });
    }
  }
  for (const d of before.devices) if (!now.has(d.deviceId)) changes.push({ kind: "device-removed", deviceId: d.deviceId, identity: d });
  return changes.sort((x, y) => x.deviceId - y.deviceId);
}

export interface CachedDeviceList extends VerifiedDeviceList {
  fetchedAtMs: number;
}

export interface DirectoryCacheOptions {
  /** How long a verified list counts as fresh (default 1 hour). */
  ttlMs?: number;
  now?: () => number;
}

export class DirectoryCache {
  private readonly entries = new Map<string, CachedDeviceList>();
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly provider: CryptoProvider,
    opts: DirectoryCacheOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 3600_000;
    this.now = opts.now ?? Date.now;
  }

  /** The cached list, fresh or not. */
  get(accountId: string): CachedDeviceList | undefined {
    return this.entries.get(accountId);
  }

  /** True when the account's list is cached and younger than the TTL. */
  isFresh(accountId: string): boolean {
    const e = this.entries.get(accountId);
    return !!e && this.now() - e.fetchedAtMs < this.ttlMs;
  }

  /** The GetDeviceList request that lets `update` verify from what is cached. */
  refreshRequest(accountId: string): { accountId: string; historyAfterVersion: bigint } {
    return { accountId, historyAfterVersion: this.entries.get(accountId)?.list.version ?? 0n };
  }

  /**
   * Verifies a GetDeviceList response (asked for with refreshRequest) from the cached version
   * and stores it. Returns the key changes against the cached list. Throws
   * DeviceListVerificationError and keeps the cached list when verification fails.
   *
   * `verifyFromStart` re-verifies the whole chain from version 1 (the response must hold the
   * whole history) instead of from the cached version, for when the user accepts a list that
   * does not continue the cached chain; the changes then show which keys differ.
   */
  async update(
    accountId: string,
    response: { deviceList?: SignedDeviceList; history: SignedDeviceList[] },
    opts: { verifyFromStart?: boolean } = {},
  ): Promise<{ list: CachedDeviceList; changes: KeyChange[] }> {
    if (!response.deviceList) throw new TypeError("GetDeviceList response has no device_list");
    const cached = this.entries.get(accountId);
    const trusted = opts.verifyFromStart ? undefined : cached?.signed;
    const verified = await verifyDeviceListChain(this.provider, { accountId, trusted, history: response.history, current: response.deviceList });
    const entry: CachedDeviceList = { ...verified, fetchedAtMs: this.now() };
    this.entries.set(accountId, entry);
    return { list: entry, changes: compareDeviceLists(cached?.list, verified.list) };
  }

  /** Forgets an account (e.g. the user reset trust); the next update verifies from version 1. */
  forget(accountId: string): void {
    this.entries.delete(accountId);
  }
}
