/**
 * The one device address type of the server, and its key "<account_id>.<device_id>" (KV keys,
 * subjects, maps). Account ids are 3 to 64 of [a-z0-9_-] (no dot), so the last dot splits a
 * key unambiguously. (The client has its own twin: the two never import each other.)
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
