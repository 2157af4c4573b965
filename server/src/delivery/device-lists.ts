/**
 * What delivery needs from the directory: the current device list of an account (to check a
 * Send's entries) and a revocation hook (to purge the device's mailbox and end its stream).
 * The directory service implements it; tests can pass a fake.
 */
export interface CurrentDeviceList {
  version: bigint;
  deviceIds: number[];
  /** Ids below this were allocated at some point; ids at or above it never existed. */
  nextDeviceId: number;
}

export type DeviceRevokedListener = (accountId: string, deviceId: number) => Promise<void>;

export interface DeviceLists {
  /** Undefined for an unknown account. */
  currentDeviceList(accountId: string): Promise<CurrentDeviceList | undefined>;
  /**
   * Of `deviceIds` (listed devices of the account), those that cannot be reached yet: no
   * signed and ML-KEM prekeys uploaded, so no sender can start a session with them. A Send
   * that leaves them out is not a mismatch (they are not reported missing).
   */
  devicesWithoutPrekeys?(accountId: string, deviceIds: number[]): Promise<number[]>;
  /** Runs on the instance that committed a revocation. */
  onDeviceRevoked?(listener: DeviceRevokedListener): void;
  /** Runs on every instance after any account's list changed. */
  onDeviceListChanged?(listener: (accountId: string, current: CurrentDeviceList) => void): void;
}

/** The directory, if it already provides the device-list interface (duck-typed so either side can land first). */
export function deviceListsOf(directory: unknown): DeviceLists | undefined {
  const d = directory as Partial<DeviceLists> | undefined;
  if (d && typeof d.currentDeviceList === "function") {
    return {
      currentDeviceList: (a) => d.currentDeviceList!.call(d, a),
      devicesWithoutPrekeys: typeof d.devicesWithoutPrekeys === "function" ? (a, ids) => d.devicesWithoutPrekeys!.call(d, a, ids) : undefined,
      onDeviceRevoked: typeof d.onDeviceRevoked === "function" ? (l) => d.onDeviceRevoked!.call(d, l) : undefined,
      onDeviceListChanged: typeof d.onDeviceListChanged === "function" ? (l) => void d.onDeviceListChanged!.call(d, l) : undefined,
    };
  }
  return undefined;
}
