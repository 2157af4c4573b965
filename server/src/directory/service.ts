/**
 * DirectoryService: accounts, signed device lists, authentication, prekeys, the change
 * stream. The server stores and serves public material only; clients verify signatures and
 * the device-list hash chain themselves. Storage layout, CAS and claim design:
 * docs/ARCHITECTURE.md "Directory".
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { DeviceAddressSchema, type DeviceAddress } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import type { DeviceIdentity } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { SealedAccessMode, type DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { KeyBundleSchema, type KeyBundle } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { SenderCertificates } from "./sender-certificates.js";
import { LOG_KEY_LABEL, TransparencyLog } from "../transparency/transparency-log.js";
import { Authenticator, type AuthenticatedDevice, type DeviceStatus } from "../auth/authenticator.js";
import { ChallengeStore } from "../auth/challenge.js";
import { callerAddressKey, callerLimitKey } from "../caller-address.js";
import { bucketNames } from "../nats/layout.js";
import type { ServerContext } from "../server-context.js";
import { checkAccountId, checkDeviceId, parseSignedDeviceList, validateChange, validateFirstList, type ChangeKind } from "./device-list-rules.js";
import { DeviceListStore, type StoredDeviceList } from "./device-list-store.js";
import { CHALLENGE_TTL_MS, NONCE_BYTES, SIGNATURE_BYTES, defaultDirectoryLimits, type DirectoryLimits } from "./limits.js";
import { OneTimePrekeyStore, checkOneTimePrekeys } from "./one-time-prekeys.js";
import { PrekeyStore, checkKemPrekey, checkSignedPrekey } from "./prekeys.js";
import { RateLimiter } from "../rate-limit.js";
import { authSignedBytes, ed25519Verify } from "./signatures.js";
import { DirectoryHub } from "./watch.js";
import { SealedAccess } from "./sealed-access.js";
import { DeviceListCache } from "./device-list-cache.js";
import { InstanceSync } from "./instance-sync.js";
import { watchAccounts } from "./watch-stream.js";
import { StreamReads } from "../nats/stream-reads.js";
import { WindowLimit } from "../nats/window-limit.js";
import { whenJetStreamReady } from "../nats/connection.js";
import { storeOp } from "../nats/store-errors.js";

/** An account's current device list, as the delivery service needs it for Send checks. */
export interface CurrentDeviceList {
  version: bigint;
  /** Listed device ids, ascending. */
  deviceIds: number[];
  /** Ids below this were allocated once: a device id < nextDeviceId not listed is stale (revoked). */
  nextDeviceId: number;
}

export type DeviceRevokedListener = (accountId: string, deviceId: number) => Promise<void>;
export type DeviceListChangedListener = (accountId: string, current: CurrentDeviceList) => void;

export interface Directory {
  impl: Partial<ServiceImpl<typeof DirectoryService>>;
  /** The limits in force (GetLimits reports the abuse limits among them). */
  limits?: DirectoryLimits;
  /** Whether a device is in its account's current list (used to check every token). */
  deviceStatus: DeviceStatus;
  /** The current list, from memory while the cache lease holds (device-list-cache.ts), else from KV. */
  currentDeviceList(accountId: string): Promise<CurrentDeviceList | undefined>;
  /** The same from memory when the cache may answer (no await), else undefined. */
  cachedDeviceList(accountId: string): CurrentDeviceList | undefined;
  /** Of these listed devices, those without signed and ML-KEM prekeys (unreachable until they upload). */
  devicesWithoutPrekeys(accountId: string, deviceIds: number[]): Promise<number[]>;
  /**
   * Called on the instance that commits a revocation, awaited before RevokeDevice answers:
   * purge the mailbox, end the device's streams on this instance. A listener's failure is
   * logged and does not undo the committed revocation.
   */
  onDeviceRevoked(listener: DeviceRevokedListener): void;
  /**
   * Called on every instance (through its KV watch) after any account's list changes, e.g.
   * to end Receive streams of devices no longer listed that live on other instances.
   */
  onDeviceListChanged(listener: DeviceListChangedListener): () => void;
  /** Who may send each account sealed mail (SetSealedAccess), from memory. */
  sealedAccess: SealedAccess;
  close(): Promise<void>;
}

export interface DirectoryOptions {
  limits?: Partial<DirectoryLimits>;
  /** Version of the sender-certificate key (sender-certificates.ts; default 1). */
  certificateKeyVersion?: number;
}

export async function createDirectory(ctx: ServerContext, options: DirectoryOptions = {}): Promise<Directory> {
  const limits: DirectoryLimits = { ...defaultDirectoryLimits, ...options.limits };
  const b = ctx.layout.buckets;
  const lists = new DeviceListStore(b.accounts, b.deviceListHistory);
  const prekeys = new PrekeyStore(b.prekeys, ctx.nats.jsm, bucketNames.prekeys);
  const oneTime = new OneTimePrekeyStore(b.oneTimePrekeys, ctx.nats.jsm, bucketNames.oneTimePrekeys, new StreamReads(ctx.nats.jsm, ctx.layout.replicas > 1));
  const challenges = new ChallengeStore(b.challenges, ctx.now, ctx.random, CHALLENGE_TTL_MS, ctx.tokens.subkey("sealpost.auth-challenge.v1"));
  const claimLimiter = new RateLimiter(limits.claimsPerMinute, ctx.now);
  const uploadLimiter = new RateLimiter(limits.uploadsPerMinute, ctx.now);
  const challengeLimiter = new RateLimiter(limits.challengesPerMinute, ctx.now);
  const transparencyLimiter = new RateLimiter(limits.transparencyReadsPerMinute, ctx.now);
  /** The open log reads, limited per caller address. */
  const transparencyRead = (hctx: HandlerContext) => rateLimit(transparencyLimiter, "key transparency read", callerLimitKey(hctx.values.get(callerAddressKey)));
  const replicas = ctx.layout.replicas;
  const registrations = await whenJetStreamReady(() =>
    WindowLimit.open(ctx.nats.jsm, ctx.nats.publisher, "accounts", limits.accountsPerAddressPerHour, 60 * 60_000, replicas),
  );
  const prekeyDrain = await whenJetStreamReady(() =>
    WindowLimit.open(ctx.nats.jsm, ctx.nats.publisher, "otpk", limits.oneTimePrekeysPerDevicePerMinute, 60_000, replicas),
  );
  const hub = new DirectoryHub(ctx.log);
  // Device lists from memory for auth and Send checks; a change returns only after every
  // live instance applied it (device-list-cache.ts, instance-sync.ts).
  const cache = new DeviceListCache((accountId) => lists.current(accountId), ctx.now);
  const sealedAccess = new SealedAccess(b.sealedAccess);
  hub.subscribeAll((e) => {
    if (e.kind === "sealed-access") sealedAccess.apply(e.accountId, e.value);
    if (e.kind !== "list") return;
    cache.apply(e.accountId, e.current, e.revision);
    ctx.metrics.watchLag((ctx.now() - e.storedAtMs) / 1000);
  });
  await hub.start(b.accounts, b.prekeys, b.sealedAccess);
  const sync = new InstanceSync({
    nc: ctx.nats.nc,
    instances: b.instances,
    jsm: ctx.nats.jsm,
    accounts: b.accounts,
    hub,
    cache,
    instanceId: Buffer.from(ctx.random(12)).toString("base64url"),
    now: ctx.now,
    log: ctx.log,
  });
  await sync.start();
  const revokedListeners: DeviceRevokedListener[] = [];

  const deviceStatus: DeviceStatus = {
    isActive: async (accountId, deviceId) => {
      const cur = await cache.get(accountId);
      return !!cur && cur.list.devices.some((d) => d.deviceId === deviceId);
    },
  };
  const auth = new Authenticator(ctx.tokens, deviceStatus);
  const certificates = new SenderCertificates(ctx.tokens, options.certificateKeyVersion ?? 1, ctx.now);
  const transparency = new TransparencyLog(ctx.nats, ctx.tokens.subkey(LOG_KEY_LABEL), ctx.now, ctx.log);
  await whenJetStreamReady(() => transparency.start());
  /** Appends an accepted version to the log; if this fails, the version's first GetDeviceList appends it. */
  const logVersion = (accountId: string, version: bigint, deviceList: Uint8Array) =>
    transparency.ensure(accountId, version, deviceList).catch((err) => {
      ctx.log.warn("key transparency append deferred to the next read", { accountId, version: String(version), error: String(err) });
    });

  const requireAccount = async (accountId: string): Promise<StoredDeviceList> => {
    const cur = await lists.current(accountId);
    if (!cur) throw new ConnectError(`account ${accountId} not found`, Code.NotFound);
    return cur;
  };
  const listedDevice = (cur: StoredDeviceList, deviceId: number): DeviceIdentity => {
    const d = cur.list.devices.find((x) => x.deviceId === deviceId);
    if (!d) throw new ConnectError(`device ${cur.list.accountId}/${deviceId} is not in the account's current device list`, Code.NotFound);
    return d;
  };
  const checkAddress = (a: DeviceAddress | undefined): DeviceAddress => {
    if (!a) throw new ConnectError("device is required", Code.InvalidArgument);
    checkAccountId(a.accountId, "device.account_id");
    checkDeviceId(a.deviceId, "device.device_id");
    return a;
  };
  const drainAllowed = async (device: string) => {
    const ok = await prekeyDrain.take(device);
    if (!ok) ctx.metrics.rejected("one_time_prekeys");
    return ok;
  };
  const rateLimit = (limiter: RateLimiter, what: string, key: string) => {
    if (!limiter.take(key)) {
      ctx.metrics.rejected(what.replace(/ /g, "_"));
      throw new ConnectError(`${what} rate limit exceeded for ${key}; retry in ${limiter.retryAfterSeconds(key)} s`, Code.ResourceExhausted);
    }
  };
  // One CurrentDeviceList per stored list, made once (every Send reads two): frozen, shared.
  const currents = new WeakMap<object, CurrentDeviceList>();
  const toCurrent = (cur: { list: StoredDeviceList["list"] }): CurrentDeviceList => {
    let c = currents.get(cur);
    if (!c) {
      c = Object.freeze({
        version: cur.list.version,
        deviceIds: Object.freeze(cur.list.devices.map((d) => d.deviceId)) as number[],
        nextDeviceId: cur.list.nextDeviceId,
      });
      currents.set(cur, c);
    }
    return c;
  };

  async function changeDeviceList(kind: ChangeKind, signed: Parameters<typeof parseSignedDeviceList>[0], hctx: HandlerContext) {
    const me = await auth.require(hctx);
    const next = parseSignedDeviceList(signed, limits);
    const cur = await requireAccount(me.accountId);
    const device = validateChange(cur, next, kind, me.accountId);
    // The version being replaced must be in the log before it stops being current (its own
    // append may have failed, and only current versions are appended on read).
    await storeOp("the key transparency log", () => transparency.ensure(me.accountId, cur.list.version, cur.signed.deviceList));
    const revision = await lists.commit(cur, next);
    if (revision === false) {
      throw new ConnectError(
        `the device list of ${me.accountId} changed concurrently; fetch the current version and sign the change again`,
        Code.FailedPrecondition,
      );
    }
    await logVersion(me.accountId, next.list.version, next.signed.deviceList);
    // Every instance must have applied the change before we say it is done.
    await sync.barrier(revision, ctx.now());
    return { me, device, version: next.list.version };
  }

  const impl: Partial<ServiceImpl<typeof DirectoryService>> = {
    async createAccount(req, hctx) {
      const first = parseSignedDeviceList(req.deviceList, limits);
      const device = validateFirstList(first);
      if (!req.signedPrekey) throw new ConnectError("signed_prekey is required", Code.InvalidArgument);
      if (!req.kemPrekey) throw new ConnectError("kem_prekey is required", Code.InvalidArgument);
      checkSignedPrekey(req.signedPrekey, device);
      checkKemPrekey(req.kemPrekey, device);
      checkBatchSize(req.oneTimePrekeys.length, limits);
      checkOneTimePrekeys(req.oneTimePrekeys);
      const accountId = first.list.accountId;
      const caller = callerLimitKey(hctx.values.get(callerAddressKey));
      if (!(await storeOp("the registration limit", () => registrations.take(caller)))) {
        ctx.metrics.rejected("account_creation");
        throw new ConnectError(
          `account creation rate limit exceeded for ${caller}: at most ${limits.accountsPerAddressPerHour} accounts per hour from one address`,
          Code.ResourceExhausted,
        );
      }
      if (!(await lists.create(first))) throw new ConnectError(`account ${accountId} already exists`, Code.AlreadyExists);
      await logVersion(accountId, first.list.version, first.signed.deviceList);
      // Prekeys only after the account is ours, so a rejected duplicate never touches the
      // existing account's keys. If this instance dies here the device uploads them later.
      await prekeys.put(accountId, device.deviceId, { signedPrekey: req.signedPrekey, kemPrekey: req.kemPrekey });
      if (req.oneTimePrekeys.length) await oneTime.add(accountId, device.deviceId, req.oneTimePrekeys);
      ctx.log.info("account created", { accountId });
      return { device: address(accountId, device.deviceId) };
    },

    async getAuthChallenge(req, hctx) {
      const a = checkAddress(req.device);
      // Per caller, not per target device: a stranger must not use up a victim's challenges.
      rateLimit(challengeLimiter, "auth challenge", callerLimitKey(hctx.values.get(callerAddressKey)));
      listedDevice(await requireAccount(a.accountId), a.deviceId);
      const c = challenges.issue(a.accountId, a.deviceId);
      return { nonce: c.nonce, expiresAtMs: BigInt(c.expiresAtMs) };
    },

    async authenticate(req) {
      const a = checkAddress(req.device);
      if (req.nonce.length !== NONCE_BYTES) throw new ConnectError(`nonce must be ${NONCE_BYTES} bytes, got ${req.nonce.length}`, Code.InvalidArgument);
      if (req.signature.length !== SIGNATURE_BYTES)
        throw new ConnectError(`signature must be ${SIGNATURE_BYTES} bytes, got ${req.signature.length}`, Code.InvalidArgument);
      const device = listedDevice(await requireAccount(a.accountId), a.deviceId);
      const found = challenges.check(a.accountId, a.deviceId, req.nonce);
      if (!found.ok) {
        throw new ConnectError(
          found.reason === "expired" ? "challenge expired; request a new one" : "challenge is unknown or already used; request a new one",
          Code.Unauthenticated,
        );
      }
      if (!ed25519Verify(device.signingKey, authSignedBytes(a.accountId, a.deviceId, req.nonce), req.signature)) {
        throw new ConnectError(`signature over the challenge does not verify under device ${a.accountId}/${a.deviceId}'s signing key`, Code.Unauthenticated);
      }
      if (!(await challenges.consume(req.nonce))) {
        throw new ConnectError("challenge is unknown or already used; request a new one", Code.Unauthenticated);
      }
      const t = ctx.tokens.issue(a.accountId, a.deviceId, ctx.config.tokenTtlSeconds * 1000);
      return { token: t.token, expiresAtMs: BigInt(t.expiresAtMs) };
    },

    async linkDevice(req, hctx) {
      const { me, device, version } = await changeDeviceList("link", req.deviceList, hctx);
      ctx.log.info("device linked", { accountId: me.accountId, deviceId: device.deviceId, version: String(version) });
      return { device: address(me.accountId, device.deviceId), version };
    },

    async revokeDevice(req, hctx) {
      const { me, device, version } = await changeDeviceList("revoke", req.deviceList, hctx);
      const id = device.deviceId;
      await Promise.all([prekeys.purgeDevice(me.accountId, id), oneTime.purgeDevice(me.accountId, id)]).catch((err) =>
        ctx.log.warn("revoked device's prekeys not purged", { accountId: me.accountId, deviceId: id, error: String(err) }),
      );
      for (const l of revokedListeners) {
        await l(me.accountId, id).catch((err) =>
          ctx.log.error("device revoked listener failed", { accountId: me.accountId, deviceId: id, error: String(err) }),
        );
      }
      ctx.log.info("device revoked", { accountId: me.accountId, deviceId: id, version: String(version) });
      return { device: address(me.accountId, id), version };
    },

    async getDeviceList(req) {
      checkAccountId(req.accountId);
      const cur = await requireAccount(req.accountId);
      const history = req.historyAfterVersion === undefined ? [] : await lists.historyAfter(cur, req.historyAfterVersion, limits.maxHistoryVersions);
      const inclusion = await storeOp("the key transparency log", () => transparency.inclusion(req.accountId, cur.list.version, cur.signed.deviceList));
      return { deviceList: cur.signed, history, transparency: inclusion };
    },

    async uploadPrekeys(req, hctx) {
      const me = await auth.require(hctx);
      if (!req.signedPrekey && !req.kemPrekey && req.oneTimePrekeys.length === 0) {
        throw new ConnectError("nothing to upload: set signed_prekey, kem_prekey and/or one_time_prekeys", Code.InvalidArgument);
      }
      checkBatchSize(req.oneTimePrekeys.length, limits);
      rateLimit(uploadLimiter, "prekey upload", deviceKey(me));
      const identity = listedDevice(await requireAccount(me.accountId), me.deviceId);
      if (req.signedPrekey) checkSignedPrekey(req.signedPrekey, identity);
      if (req.kemPrekey) checkKemPrekey(req.kemPrekey, identity);
      checkOneTimePrekeys(req.oneTimePrekeys);
      let stored = await oneTime.storedKeyIds(me.accountId, me.deviceId);
      if (req.oneTimePrekeys.length) {
        const taken = req.oneTimePrekeys.find((k) => stored.has(k.keyId));
        if (taken) throw new ConnectError(`one-time prekey id ${taken.keyId} is already stored`, Code.AlreadyExists);
        if (stored.size + req.oneTimePrekeys.length > limits.maxStoredOneTimePrekeys) {
          throw new ConnectError(
            `device has ${stored.size} one-time prekeys stored; ${req.oneTimePrekeys.length} more would exceed the maximum of ${limits.maxStoredOneTimePrekeys}`,
            Code.ResourceExhausted,
          );
        }
        // One-time keys first: their write is all-or-nothing, the prekey replace below is one write.
        await oneTime.add(me.accountId, me.deviceId, req.oneTimePrekeys);
        stored = await oneTime.storedKeyIds(me.accountId, me.deviceId);
      }
      if (req.signedPrekey || req.kemPrekey) await prekeys.put(me.accountId, me.deviceId, { signedPrekey: req.signedPrekey, kemPrekey: req.kemPrekey });
      return { oneTimePrekeyCount: stored.size };
    },

    async getPrekeyCount(_req, hctx) {
      const me = await auth.require(hctx);
      const [count, pk] = await Promise.all([oneTime.count(me.accountId, me.deviceId), prekeys.get(me.accountId, me.deviceId)]);
      return { oneTimePrekeyCount: count, signedPrekeyId: pk.signedPrekey?.keyId ?? 0, kemPrekeyId: pk.kemPrekey?.keyId ?? 0 };
    },

    async claimKeyBundles(req, hctx) {
      const me = await auth.require(hctx);
      checkAccountId(req.accountId);
      if (req.deviceIds.length > limits.maxDevicesPerAccount) {
        throw new ConnectError(`at most ${limits.maxDevicesPerAccount} device_ids per request, got ${req.deviceIds.length}`, Code.InvalidArgument);
      }
      const unique = new Set<number>();
      for (const id of req.deviceIds) {
        checkDeviceId(id, "device_ids[]");
        if (unique.has(id)) throw new ConnectError(`device_ids lists device ${id} twice`, Code.InvalidArgument);
        unique.add(id);
      }
      rateLimit(claimLimiter, "key bundle claim", deviceKey(me));
      const cur = await requireAccount(req.accountId);
      const explicit = req.deviceIds.length > 0;
      const targets = explicit
        ? [...unique].sort((x, y) => x - y).map((id) => listedDevice(cur, id))
        : cur.list.devices.filter((d) => !(req.accountId === me.accountId && d.deviceId === me.deviceId));
      // Everything that can fail is checked before a one-time prekey is consumed.
      const withKeys = await Promise.all(targets.map(async (identity) => ({ identity, keys: await prekeys.get(req.accountId, identity.deviceId) })));
      const ready = withKeys.filter((t) => t.keys.signedPrekey && t.keys.kemPrekey);
      if (explicit && ready.length !== withKeys.length) {
        const missing = withKeys.find((t) => !(t.keys.signedPrekey && t.keys.kemPrekey))!;
        throw new ConnectError(
          `device ${req.accountId}/${missing.identity.deviceId} has not uploaded its signed and ML-KEM prekeys yet`,
          Code.FailedPrecondition,
        );
      }
      const bundles: KeyBundle[] = await Promise.all(
        ready.map(async ({ identity, keys }) =>
          create(KeyBundleSchema, {
            identity,
            signedPrekey: keys.signedPrekey,
            kemPrekey: keys.kemPrekey,
            // Past the per-device rate, no one-time prekey: the session still starts, the supply stays.
            oneTimePrekey: (await drainAllowed(`${req.accountId}/${identity.deviceId}`)) ? await oneTime.claim(req.accountId, identity.deviceId) : undefined,
          }),
        ),
      );
      return { deviceListVersion: cur.list.version, bundles };
    },

    async *watchDirectory(req, hctx) {
      await auth.require(hctx);
      const ids = [...new Set(req.accountIds)];
      if (ids.length === 0) throw new ConnectError("account_ids must name at least one account", Code.InvalidArgument);
      if (ids.length > limits.maxWatchedAccounts) {
        throw new ConnectError(`at most ${limits.maxWatchedAccounts} accounts per watch, got ${ids.length}`, Code.InvalidArgument);
      }
      ids.forEach((id) => checkAccountId(id, "account_ids[]"));
      yield* watchAccounts(ids, hub, lists, AbortSignal.any([hctx.signal, ctx.shutdownSignal]));
    },

    async getSenderCertificate(_req, hctx) {
      const me = await auth.require(hctx);
      const cur = await cache.get(me.accountId);
      const device = cur?.list.devices.find((d) => d.deviceId === me.deviceId);
      if (!device) throw new ConnectError(`device ${me.accountId}/${me.deviceId} is not in the account's current device list`, Code.NotFound);
      return { certificate: certificates.issue(me.accountId, me.deviceId, device.signingKey) };
    },

    async getCertificateKeys() {
      return { keys: certificates.keys() };
    },

    async getTreeHead(_req, hctx) {
      transparencyRead(hctx);
      return { treeHead: transparency.treeHead(), logKey: transparency.logKey };
    },

    async getConsistencyProof(req, hctx) {
      transparencyRead(hctx);
      return { proof: await storeOp("the key transparency log", () => transparency.consistency(req.firstSize, req.secondSize)) };
    },

    async getLogEntries(req, hctx) {
      transparencyRead(hctx);
      return { entries: transparency.entries(req.start, req.count) };
    },

    async setSealedAccess(req, hctx) {
      const me = await auth.require(hctx);
      const mode = req.mode;
      if (mode !== SealedAccessMode.DISABLED && mode !== SealedAccessMode.CONTACTS && mode !== SealedAccessMode.ANYONE) {
        throw new ConnectError(`mode must be DISABLED, CONTACTS or ANYONE, got ${mode}`, Code.InvalidArgument);
      }
      if (mode === SealedAccessMode.CONTACTS && req.accessKeySha256.length !== 32) {
        throw new ConnectError(`access_key_sha256 must be 32 bytes (SHA-256) for CONTACTS, got ${req.accessKeySha256.length}`, Code.InvalidArgument);
      }
      if (mode !== SealedAccessMode.CONTACTS && req.accessKeySha256.length) {
        throw new ConnectError("access_key_sha256 must be empty unless the mode is CONTACTS", Code.InvalidArgument);
      }
      await sealedAccess.set(me.accountId, me.deviceId, mode === SealedAccessMode.CONTACTS ? { mode, keySha256: req.accessKeySha256 } : { mode });
      return {};
    },
  };

  return {
    impl,
    limits,
    deviceStatus,
    currentDeviceList: async (accountId) => {
      const cur = await cache.get(accountId);
      return cur ? toCurrent(cur) : undefined;
    },
    cachedDeviceList: (accountId) => {
      const cur = cache.peek(accountId);
      return cur ? toCurrent(cur) : undefined;
    },
    devicesWithoutPrekeys: async (accountId, deviceIds) => {
      const keys = await Promise.all(deviceIds.map((id) => prekeys.get(accountId, id)));
      return deviceIds.filter((_, i) => !(keys[i].signedPrekey && keys[i].kemPrekey));
    },
    onDeviceRevoked: (listener) => void revokedListeners.push(listener),
    sealedAccess,
    onDeviceListChanged: (listener) =>
      hub.subscribeAll((e) => {
        if (e.kind === "list") listener(e.accountId, toCurrent(e.current));
      }),
    close: async () => {
      cache.fence();
      await sync.close();
      hub.close();
      await transparency.close();
    },
  };
}

function checkBatchSize(n: number, limits: DirectoryLimits): void {
  if (n > limits.maxPrekeysPerUpload) {
    throw new ConnectError(`at most ${limits.maxPrekeysPerUpload} one-time prekeys per request, got ${n}`, Code.ResourceExhausted);
  }
}

const address = (accountId: string, deviceId: number) => create(DeviceAddressSchema, { accountId, deviceId });
const deviceKey = (d: AuthenticatedDevice) => `${d.accountId}/${d.deviceId}`;
