/**
 * The one address type of the client: a device, by account id and device id, and its key
 * "<account_id>.<device_id>" (store file names, maps, group bookkeeping). Account ids are 3
 * to 64 of [a-z0-9_-] (no dot), so the last dot splits a key unambiguously.
 */
export interface DeviceRef {
  accountId: string;
  deviceId: number;
}

/** "<account_id>.<device_id>" */
export function addressKey(d: DeviceRef): string {
  return `${d.accountId}.${d.deviceId}`;
}

/** The device of an addressKey(); throws RangeError for anything else. */
export function parseAddressKey(key: string): DeviceRef {
  const dot = key.lastIndexOf(".");
  const deviceId = Number(key.slice(dot + 1));
  if (dot <= 0 || !Number.isSafeInteger(deviceId) || deviceId < 1) throw new RangeError(`not a device address key: ${JSON.stringify(key)}`);
  return { accountId: key.slice(0, dot), deviceId };
}
