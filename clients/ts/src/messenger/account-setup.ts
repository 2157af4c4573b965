/**
 * How a device comes to exist: registering a new account with it as the first device,
 * opening it again from its stores, or linking it to an existing account (a link code shown
 * to a device of the account, then waiting until the account's signed device list holds it).
 * Each returns what the Messenger is built from; the Messenger finishes the setup.
 */
import { bytesEqual } from "../crypto/bytes.js";
import { defaultProvider } from "#platform";
import type { CryptoProvider } from "../crypto/provider.js";
import { verifyDeviceListChain, type VerifiedDeviceList } from "../directory/device-list-chain.js";
import { createFirstDeviceList, generateDeviceKeys, type GeneratedDeviceKeys } from "../directory/device-list-changes.js";
import { LINK_CODE_TTL_MS, makeLinkCode } from "../directory/link-code.js";
import { defaultPrekeyPolicy, initialPrekeys, type PrekeyPolicy } from "../directory/prekey-maintenance.js";
import { isTransient } from "../transport/failure-kinds.js";
import type { LocalIdentity } from "../protocol/identity.js";
import type { AccountRecord } from "../store/conversation-store.js";
import { ServerApi } from "../transport/server-api.js";
import { MessengerError } from "../core/messenger-errors.js";
import { sleep } from "../util/backoff.js";
import type { MessengerOptions } from "./messenger.js";

/** The platform parts a Messenger runs on, from its options. */
export interface Resolved {
  provider: CryptoProvider;
  now: () => number;
  api: ServerApi;
}

/** A device ready to be built: its account record, platform parts and signing seed. */
export interface DeviceSetup {
  account: AccountRecord;
  resolved: Resolved;
  signingSeed: Uint8Array;
}

export function resolve(opts: MessengerOptions): Resolved {
  const provider = opts.provider ?? defaultProvider(opts.random ? { random: opts.random } : {});
  const now = opts.now ?? Date.now;
  return { provider, now, api: new ServerApi({ baseUrl: opts.serverUrl, provider, now, transport: opts.transport }) };
}

function localIdentityOf(keys: GeneratedDeviceKeys, deviceId: number): LocalIdentity {
  return {
    deviceId,
    signingSeed: keys.signingSeed,
    signingKey: keys.signingKey,
    dhPrivateKey: keys.dhPrivateKey,
    dhKey: keys.dhKey,
    dhKeySignature: keys.dhKeySignature,
  };
}

function newAccountRecord(accountId: string, deviceId: number, deviceName: string, serverUrl: string, now: number, policy: PrekeyPolicy): AccountRecord {
  return {
    accountId,
    deviceId,
    deviceName,
    serverUrl,
    createdAtMs: now,
    nextOneTimePrekeyId: Math.min(policy.target, 100) + 1,
    signedPrekeyId: 1,
    signedPrekeyCreatedAtMs: now,
    kemPrekeyId: 1,
    kemPrekeyCreatedAtMs: now,
  };
}

/** Registers a new account with this device as its first device (stores its identity and account record). */
export async function registerAccount(
  opts: MessengerOptions & { accountId: string; deviceName: string },
): Promise<DeviceSetup & { trusted: VerifiedDeviceList }> {
  if (await opts.store.getAccount()) throw new MessengerError("already_initialized", "this store already holds an account");
  const r = resolve(opts);
  const nowMs = r.now();
  const policy = { ...defaultPrekeyPolicy, ...opts.prekeyPolicy };
  const keys = await generateDeviceKeys(r.provider, opts.deviceName);
  const signed = await createFirstDeviceList(r.provider, { accountId: opts.accountId, device: keys, nowMs });
  await opts.protocol.identity.setLocalIdentity(localIdentityOf(keys, 1));
  const prekeys = await initialPrekeys(r.provider, opts.protocol, policy, nowMs);
  const res = await r.api.open.createAccount({
    deviceList: signed,
    signedPrekey: prekeys.signedPrekey,
    kemPrekey: prekeys.kemPrekey,
    oneTimePrekeys: prekeys.oneTimePrekeys,
  });
  const deviceId = res.device?.deviceId ?? 1;
  const account = newAccountRecord(opts.accountId, deviceId, opts.deviceName, opts.serverUrl, nowMs, policy);
  await opts.store.setAccount(account);
  const trusted = await verifyDeviceListChain(r.provider, { accountId: opts.accountId, history: [signed], current: signed });
  return { account, resolved: r, signingSeed: keys.signingSeed, trusted };
}

/** An existing device, from its stores. */
export async function openAccount(opts: MessengerOptions): Promise<DeviceSetup> {
  const account = await opts.store.getAccount();
  const local = await opts.protocol.identity.getLocalIdentity();
  if (!account || !local) throw new MessengerError("not_initialized", "this store holds no account; create or link one first");
  return { account, resolved: resolve(opts), signingSeed: local.signingSeed };
}

/** A new device waiting to be linked: its code, and a wait for the link. */
export interface Linking {
  code: string;
  validForMs: number;
  /**
   * Polls the account's device list until it lists this device (its identity is then stored;
   * the account record is the caller's to store, last, after the prekeys are uploaded).
   */
  linked(opts?: {
    timeoutMs?: number;
    pollMs?: number;
  }): Promise<DeviceSetup & { trusted: VerifiedDeviceList; prekeys: Awaited<ReturnType<typeof initialPrekeys>> }>;
}

export async function startLinking(opts: MessengerOptions & { accountId: string; deviceName: string }): Promise<Linking> {
  if (await opts.store.getAccount()) throw new MessengerError("already_initialized", "this store already holds an account");
  const r = resolve(opts);
  const keys = await generateDeviceKeys(r.provider, opts.deviceName);
  const code = await makeLinkCode(r.provider, keys, opts.accountId, opts.deviceName, r.now());
  const linked: Linking["linked"] = async (c = {}) => {
    const deadline = Date.now() + (c.timeoutMs ?? 120_000);
    for (;;) {
      const res = await r.api.open.getDeviceList({ accountId: opts.accountId, historyAfterVersion: 0n }).catch((err: unknown) => {
        if (isTransient(err)) return undefined;
        throw err;
      });
      if (res?.deviceList) {
        // First contact with our own account: verify the whole chain from version 1.
        const trusted = await verifyDeviceListChain(r.provider, { accountId: opts.accountId, history: res.history, current: res.deviceList });
        const mine = trusted.list.devices.find((d) => bytesEqual(d.signingKey, keys.signingKey));
        if (mine) {
          const nowMs = r.now();
          const policy = { ...defaultPrekeyPolicy, ...opts.prekeyPolicy };
          await opts.protocol.identity.setLocalIdentity(localIdentityOf(keys, mine.deviceId));
          const account = newAccountRecord(opts.accountId, mine.deviceId, opts.deviceName, opts.serverUrl, nowMs, policy);
          const prekeys = await initialPrekeys(r.provider, opts.protocol, policy, nowMs);
          return { account, resolved: r, signingSeed: keys.signingSeed, trusted, prekeys };
        }
      }
      if (Date.now() > deadline) throw new MessengerError("link_timeout", "this device was not linked in time");
      await sleep(c.pollMs ?? 250);
    }
  };
  return { code, validForMs: LINK_CODE_TTL_MS, linked };
}
