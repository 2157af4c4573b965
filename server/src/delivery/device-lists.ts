/**
 * What delivery needs from the directory: the current device list of an account (to check a
 * Send's entries) and a revocation hook (to purge the device's mailbox and end its stream).
 * The directory service implements it (these are its types); tests can pass a fake.
 */
import type { CurrentDeviceList, DeviceRevokedListener } from "../directory/service.js";

export type { CurrentDeviceList, DeviceRevokedListener };

export interface DeviceLists {
  /** Undefined for an unknown account. */
  currentDeviceList(accountId: string): Promise<CurrentDeviceList | undefined>;
  /** The same from memory when it can answer without a read (no promise), else undefined. */
  cachedDeviceList?(accountId: string): CurrentDeviceList | undefined;
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
