/**
 * This device watches the key transparency log for its own account: every version of the
 * account in the log must be one of the account's verified chain (key-transparency.ts,
 * monitor). Run when the Messenger starts and with its periodic upkeep.
 */
import type { CryptoProvider } from "../crypto/provider.js";
import type { ServerApi } from "../transport/server-api.js";
import { verifyDeviceListChain } from "./device-list-chain.js";
import { parseDeviceList } from "./device-list-changes.js";
import type { KeyTransparency } from "./key-transparency.js";

export async function monitorOwnAccount(api: ServerApi, provider: CryptoProvider, kt: KeyTransparency, accountId: string): Promise<void> {
  const res = await api.open.getDeviceList({ accountId, historyAfterVersion: 0n });
  if (!res.deviceList) return;
  // The whole chain from version 1, verified: its versions are the ones the account made.
  await verifyDeviceListChain(provider, { accountId, history: res.history, current: res.deviceList });
  const versions = new Map<bigint, Uint8Array>();
  for (const signed of [...res.history, res.deviceList]) versions.set(parseDeviceList(signed).version, provider.sha256(signed.deviceList));
  await kt.monitor(accountId, versions);
}
