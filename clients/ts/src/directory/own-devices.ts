/**
 * This account's devices, from one of them: link a new device from its link code, revoke a
 * device (this one included), list an account's verified devices, and the safety number with
 * a contact. Every change is a device-list version signed by this device (PROTOCOL.md,
 * "Device lists and authentication"; link codes: directory/link-code.ts).
 */
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { SignedDeviceListSchema, type DeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import type { DeviceRef } from "../protocol/address.js";
import type { ContactDirectory } from "./contact-directory.js";
import type { ConversationStore } from "../store/conversation-store.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { verifyDeviceListChain } from "./device-list-chain.js";
import { linkDeviceChange, revokeDeviceChange, type DeviceSigner } from "./device-list-changes.js";
import { checkNeverLinked, readLinkCode } from "./link-code.js";
import { MessengerError } from "../core/messenger-errors.js";
import { formatSafetyNumber, safetyNumber } from "../protocol/safety-number.js";
import type { ServerApi } from "../transport/server-api.js";

/** A device of an account as the UI lists it. */
export interface DeviceInfo {
  accountId: string;
  deviceId: number;
  name: string;
  addedAtMs: number;
  isThisDevice: boolean;
}

export interface OwnDevicesDeps {
  self: DeviceRef;
  provider: CryptoProvider;
  api: ServerApi;
  directory: ContactDirectory;
  store: ConversationStore;
  /** This device's Ed25519 signing seed (from its local identity). */
  signingSeed(): Promise<Uint8Array>;
  now: () => number;
  /** This device revoked itself. */
  onSelfRevoked: () => void;
}

export class OwnDevices {
  constructor(private readonly d: OwnDevicesDeps) {}

  /** Links a new device from its code (run on an existing device). Returns its address. */
  async link(code: string): Promise<DeviceRef> {
    const { self, provider, api, directory } = this.d;
    const link = await readLinkCode(provider, code, self.accountId, this.d.now());
    // Used once: keys the account's verified chain holds or held are refused (a revoked
    // device never comes back with its old keys).
    const chain = await api.open.getDeviceList({ accountId: self.accountId, historyAfterVersion: 0n });
    if (!chain.deviceList) throw new MessengerError("link_code_invalid", `account ${self.accountId} has no device list`);
    await verifyDeviceListChain(provider, { accountId: self.accountId, history: chain.history, current: chain.deviceList });
    checkNeverLinked(chain.history, link);
    const signer = await this.signer();
    for (let attempt = 0; ; attempt++) {
      await directory.refresh(self.accountId);
      const current = (await this.trustedSigned())!;
      const change = await linkDeviceChange(
        provider,
        current,
        signer,
        { signingKey: link.signingKey, dhKey: link.dhKey, dhKeySignature: link.dhKeySignature, name: link.name },
        this.d.now(),
      );
      try {
        const res = await api.directory.linkDevice({ deviceList: change.deviceList });
        await directory.refresh(self.accountId);
        return { accountId: self.accountId, deviceId: res.device?.deviceId ?? change.deviceId };
      } catch (err) {
        // Another device changed the list at the same time: sign against the new version.
        if (attempt < 2 && isConcurrentChange(err)) continue;
        throw err;
      }
    }
  }

  /** Removes a device of this account (this one included). */
  async revoke(deviceId: number): Promise<void> {
    const { self, provider, api, directory } = this.d;
    const signer = await this.signer();
    for (let attempt = 0; ; attempt++) {
      await directory.refresh(self.accountId);
      const current = (await this.trustedSigned())!;
      const change = await revokeDeviceChange(provider, current, signer, deviceId, this.d.now());
      try {
        await api.directory.revokeDevice({ deviceList: change });
        break;
      } catch (err) {
        if (attempt < 2 && isConcurrentChange(err)) continue;
        throw err;
      }
    }
    if (deviceId === self.deviceId) {
      this.d.onSelfRevoked();
      return;
    }
    await directory.refresh(self.accountId);
  }

  /** The verified devices of an account (default: this one). */
  async list(accountId = this.d.self.accountId, opts: { refresh?: boolean } = {}): Promise<DeviceInfo[]> {
    const list = await this.d.directory.devices(accountId, opts);
    return list.devices.map((d) => ({
      accountId,
      deviceId: d.deviceId,
      name: d.name,
      addedAtMs: Number(d.addedAtMs),
      isThisDevice: accountId === this.d.self.accountId && d.deviceId === this.d.self.deviceId,
    }));
  }

  /** The 60-digit safety number with a contact, in groups of five. */
  async safetyNumber(accountId: string): Promise<string> {
    const own = this.d.self.accountId;
    const [mine, theirs] = await Promise.all([this.d.directory.devices(own), this.d.directory.devices(accountId)]);
    const keys = (l: DeviceList) => l.devices.map((d) => ({ signingKey: d.signingKey, dhKey: d.dhKey }));
    return formatSafetyNumber(safetyNumber(this.d.provider, { accountId: own, devices: keys(mine) }, { accountId, devices: keys(theirs) }));
  }

  private async signer(): Promise<DeviceSigner> {
    return { deviceId: this.d.self.deviceId, signingSeed: await this.d.signingSeed() };
  }

  private async trustedSigned() {
    const t = await this.d.store.getTrustedList(this.d.self.accountId);
    return t ? fromBinary(SignedDeviceListSchema, t.signed) : undefined;
  }
}

/** FAILED_PRECONDITION on a device-list change: another device changed the list first. */
function isConcurrentChange(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.FailedPrecondition;
}
