/**
 * The Messenger's view of the identity directory: a TTL cache of verified device lists with
 * I/O. Each refresh fetches GetDeviceList with the history after the last *trusted* version
 * (persisted in the conversation store, so trust survives restarts), verifies the signature
 * chain from there (directory/device-list-chain.ts), records every device's identity keys in
 * the protocol identity store (so sessions only start with listed keys), and reports what
 * changed as events: key-change for contacts, device-linked / device-revoked for this
 * account. Devices that left a list are forgotten (forgetDevice: sessions and recorded
 * identity). Refreshed when the TTL ran out, when a Send answers MismatchedDevices, when an
 * unknown sender identity shows up, and on WatchDirectory events.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { SignedDeviceListSchema, type DeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import type { KeyBundle } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { bytesEqual } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { DeviceListVerificationError, verifyDeviceListChain, type VerifiedDeviceList } from "./device-list-chain.js";
import { parseDeviceList } from "./device-list-changes.js";
import { compareDeviceLists } from "./directory-cache.js";
import type { IdentityStore } from "../protocol/stores.js";
import { addressKey } from "../protocol/address.js";
import type { ConversationStore, DeviceRef } from "../store/conversation-store.js";
import type { MessengerEvent } from "../core/events.js";
import { MessengerError } from "../core/messenger-errors.js";
import type { ServerApi } from "../transport/server-api.js";
import { TransparencyError, type KeyTransparency } from "./key-transparency.js";

export interface ContactDirectoryDeps {
  api: ServerApi;
  provider: CryptoProvider;
  store: ConversationStore;
  identity: IdentityStore;
  now: () => number;
  ttlMs: number;
  self: () => DeviceRef;
  emit: (e: MessengerEvent) => void;
  /** Drops the sessions and recorded identity of a device removed from its account's list. */
  forgetDevice?: (device: DeviceRef) => Promise<void>;
  /** Checks that each fetched list is in the key transparency log. */
  transparency: KeyTransparency;
}

interface Entry {
  verified: VerifiedDeviceList;
  fetchedAtMs: number;
}

export class ContactDirectory {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<DeviceList>>();

  constructor(private readonly d: ContactDirectoryDeps) {}

  private async cached(accountId: string): Promise<Entry | undefined> {
    let e = this.entries.get(accountId);
    if (!e) {
      const t = await this.d.store.getTrustedList(accountId);
      if (t) {
        const signed = fromBinary(SignedDeviceListSchema, t.signed);
        e = { verified: { signed, list: parseDeviceList(signed) }, fetchedAtMs: t.fetchedAtMs };
        this.entries.set(accountId, e);
      }
    }
    return e;
  }

  /** The verified list, fetched when missing, older than the TTL, or below `minVersion`. */
  async devices(accountId: string, opts: { refresh?: boolean; minVersion?: bigint } = {}): Promise<DeviceList> {
    const e = await this.cached(accountId);
    const fresh = e && this.d.now() - e.fetchedAtMs < this.d.ttlMs;
    const recent = e && (opts.minVersion === undefined || e.verified.list.version >= opts.minVersion);
    if (e && fresh && recent && !opts.refresh) return e.verified.list;
    return this.refresh(accountId);
  }

  /** The trusted list without any network call (undefined when never fetched). */
  async known(accountId: string): Promise<DeviceList | undefined> {
    return (await this.cached(accountId))?.verified.list;
  }

  /** Fetches and verifies the account's list now (concurrent callers share one fetch). */
  refresh(accountId: string): Promise<DeviceList> {
    let p = this.inflight.get(accountId);
    if (!p) {
      p = this.fetch(accountId).finally(() => this.inflight.delete(accountId));
      this.inflight.set(accountId, p);
    }
    return p;
  }

  /**
   * Trusts a list verified elsewhere (this account's own list at creation or linking)
   * without reporting changes.
   */
  async trust(accountId: string, verified: VerifiedDeviceList): Promise<void> {
    await this.record(accountId, verified);
  }

  private async fetch(accountId: string): Promise<DeviceList> {
    const before = await this.cached(accountId);
    const res = await this.d.api.open.getDeviceList({ accountId, historyAfterVersion: before?.verified.list.version ?? 0n });
    if (!res.deviceList) throw new MessengerError("directory_untrusted", `GetDeviceList for ${accountId} returned no list`);
    let verified: VerifiedDeviceList;
    try {
      verified = await verifyDeviceListChain(this.d.provider, { accountId, trusted: before?.verified.signed, history: res.history, current: res.deviceList });
      await this.d.transparency.verify(accountId, verified.list.version, res.deviceList.deviceList, res.transparency);
    } catch (err) {
      if (err instanceof DeviceListVerificationError || err instanceof TransparencyError) {
        this.d.emit({ type: "directory-untrusted", accountId, problem: err.problem, detail: err.message });
        throw new MessengerError("directory_untrusted", `device list of ${accountId} failed verification (${err.problem})`, { cause: err });
      }
      throw err;
    }
    await this.record(accountId, verified);
    if (before) {
      const me = this.d.self();
      const now = new Set(verified.list.devices.map((d) => d.deviceId));
      for (const d of before.verified.list.devices) {
        if (now.has(d.deviceId) || (accountId === me.accountId && d.deviceId === me.deviceId)) continue;
        await this.d.forgetDevice?.({ accountId, deviceId: d.deviceId });
      }
      this.report(accountId, before.verified.list, verified.list);
    }
    return verified.list;
  }

  private async record(accountId: string, verified: VerifiedDeviceList): Promise<void> {
    const me = this.d.self();
    for (const dev of verified.list.devices) {
      if (accountId === me.accountId && dev.deviceId === me.deviceId) continue;
      const key = addressKey({ accountId, deviceId: dev.deviceId });
      const known = await this.d.identity.getRemoteIdentity(key);
      // Ids are never reused and the chain forbids in-place key changes, so a recorded identity stays.
      if (!known) await this.d.identity.saveRemoteIdentity(key, { signingKey: dev.signingKey, dhKey: dev.dhKey });
    }
    const fetchedAtMs = this.d.now();
    this.entries.set(accountId, { verified, fetchedAtMs });
    await this.d.store.setTrustedList({ accountId, signed: toBinary(SignedDeviceListSchema, verified.signed), fetchedAtMs });
  }

  private report(accountId: string, before: DeviceList, after: DeviceList): void {
    const changes = compareDeviceLists(before, after);
    if (changes.length === 0) return;
    const me = this.d.self();
    if (accountId === me.accountId) {
      for (const c of changes) {
        if (c.kind === "device-added") this.d.emit({ type: "device-linked", device: { accountId, deviceId: c.deviceId }, name: c.identity.name });
        else if (c.kind === "device-removed")
          this.d.emit({ type: "device-revoked", device: { accountId, deviceId: c.deviceId }, self: c.deviceId === me.deviceId });
      }
      return;
    }
    this.d.emit({ type: "key-change", accountId, changes, safetyNumberChanged: true });
  }

  /**
   * Claims key bundles for devices without a session and checks that each bundle's identity
   * is the one the verified list names (the server cannot swap keys).
   */
  async claim(accountId: string, deviceIds: number[]): Promise<Map<number, KeyBundle>> {
    const res = await this.d.api.directory.claimKeyBundles({ accountId, deviceIds });
    const list = await this.devices(accountId, { minVersion: res.deviceListVersion });
    const out = new Map<number, KeyBundle>();
    for (const b of res.bundles) {
      const id = b.identity?.deviceId ?? -1;
      const listed = list.devices.find((x) => x.deviceId === id);
      if (!listed || !b.identity || !bytesEqual(listed.signingKey, b.identity.signingKey) || !bytesEqual(listed.dhKey, b.identity.dhKey)) {
        throw new MessengerError("directory_untrusted", `key bundle of ${accountId}/${id} does not match its verified device list`);
      }
      out.set(id, b);
    }
    return out;
  }
}
