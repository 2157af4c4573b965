/**
 * Client-side device-list verification: a valid chain verifies from version 1 and from any
 * trusted version; an injected device, a rewritten or truncated history, a fork, a rollback,
 * another account's list, a reused id or an in-place key change are each caught; the cache
 * reports added, removed and changed devices and keeps its list when verification fails.
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { SignedDeviceListSchema, type SignedDeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { createNobleProvider, createNodeProvider } from "../src/crypto/index.js";
import {
  createFirstDeviceList,
  generateDeviceKeys,
  linkDeviceChange,
  parseDeviceList,
  revokeDeviceChange,
  signDeviceList,
  type DeviceSigner,
  type GeneratedDeviceKeys,
} from "../src/directory/device-list-changes.js";
import { DeviceListVerificationError, verifyDeviceListChain, type DeviceListProblem } from "../src/directory/device-list-chain.js";
import { DirectoryCache } from "../src/directory/directory-cache.js";

const T = 1_700_000_000_000;

async function chain(provider = createNodeProvider()) {
  const k1 = await generateDeviceKeys(provider, "phone");
  const k2 = await generateDeviceKeys(provider, "laptop");
  const k3 = await generateDeviceKeys(provider, "tablet");
  const s1: DeviceSigner = { deviceId: 1, signingSeed: k1.signingSeed };
  const v1 = await createFirstDeviceList(provider, { accountId: "alice", device: k1, nowMs: T });
  const v2 = (await linkDeviceChange(provider, v1, s1, k2, T + 1)).deviceList;
  const v3 = (await linkDeviceChange(provider, v2, { deviceId: 2, signingSeed: k2.signingSeed }, k3, T + 2)).deviceList;
  const v4 = await revokeDeviceChange(provider, v3, s1, 2, T + 3);
  return { provider, k1, k2, k3, s1, v1, v2, v3, v4 };
}

async function problem(fn: () => unknown): Promise<DeviceListProblem | "none"> {
  try {
    await fn();
    return "none";
  } catch (e) {
    if (e instanceof DeviceListVerificationError) return e.problem;
    throw e;
  }
}

describe("verifyDeviceListChain", () => {
  for (const make of [createNodeProvider, createNobleProvider]) {
    it(`accepts a valid chain from version 1 and from a trusted version (${make().name})`, async () => {
      const c = await chain(make());
      const v = await verifyDeviceListChain(c.provider, { accountId: "alice", history: [c.v1, c.v2, c.v3, c.v4], current: c.v4 });
      expect(v.list.version).toBe(4n);
      expect(v.list.devices.map((d) => d.deviceId)).toEqual([1, 3]);
      expect((await verifyDeviceListChain(c.provider, { accountId: "alice", trusted: c.v2, history: [c.v3, c.v4], current: c.v4 })).list.version).toBe(4n);
      expect((await verifyDeviceListChain(c.provider, { accountId: "alice", trusted: c.v4, history: [], current: c.v4 })).list.version).toBe(4n);
    });
  }

  it("catches a device the server injected", async () => {
    const c = await chain();
    const ghost = await generateDeviceKeys(c.provider, "ghost");
    // Signed by the ghost itself, claiming to be device 1, or by a device not in v4.
    const byGhost = (await linkDeviceChange(c.provider, c.v4, { deviceId: 1, signingSeed: ghost.signingSeed }, ghost, T)).deviceList;
    expect(await problem(() => verifyDeviceListChain(c.provider, { accountId: "alice", trusted: c.v4, history: [byGhost], current: byGhost }))).toBe(
      "bad-signature",
    );
    const selfSigned = (await linkDeviceChange(c.provider, c.v4, { deviceId: 4, signingSeed: ghost.signingSeed }, ghost, T)).deviceList;
    expect(await problem(() => verifyDeviceListChain(c.provider, { accountId: "alice", trusted: c.v4, history: [selfSigned], current: selfSigned }))).toBe(
      "unknown-signer",
    );
    // The revoked device 2 signing after its revocation.
    const byRevoked = (await linkDeviceChange(c.provider, c.v4, { deviceId: 2, signingSeed: c.k2.signingSeed }, ghost, T)).deviceList;
    expect(await problem(() => verifyDeviceListChain(c.provider, { accountId: "alice", trusted: c.v4, history: [byRevoked], current: byRevoked }))).toBe(
      "unknown-signer",
    );
  });

  it("catches rewritten, truncated, forked and rolled-back histories", async () => {
    const c = await chain();
    const A = { accountId: "alice" };
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, history: [c.v1, c.v2, c.v4], current: c.v4 }))).toBe("broken-chain");
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, history: [c.v2, c.v3, c.v4], current: c.v4 }))).toBe("bad-first-version");
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, history: [c.v1, c.v2], current: c.v4 }))).toBe("broken-chain");
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, trusted: c.v4, history: [], current: c.v3 }))).toBe("rollback");
    // A second version 4 with the same parent: the server shows different lists to different people.
    const other4 = await revokeDeviceChange(c.provider, c.v3, c.s1, 3, T + 9);
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, trusted: c.v4, history: [], current: other4 }))).toBe("fork");
    // A re-signed v3 whose previous_hash points elsewhere.
    const l3 = parseDeviceList(c.v3);
    l3.previousHash = new Uint8Array(32);
    const bad3 = await signDeviceList(c.provider, l3, c.s1);
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, trusted: c.v2, history: [bad3], current: bad3 }))).toBe("broken-chain");
    // Tampered bytes under the original signature.
    const tampered = create(SignedDeviceListSchema, { ...c.v4, deviceList: c.v4.deviceList.map((b, i) => (i === c.v4.deviceList.length - 1 ? b ^ 1 : b)) });
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, trusted: c.v3, history: [tampered], current: tampered }))).not.toBe("none");
    expect(await problem(() => verifyDeviceListChain(c.provider, { accountId: "bob", history: [c.v1, c.v2, c.v3, c.v4], current: c.v4 }))).toBe(
      "wrong-account",
    );
  });

  it("catches a reused device id and a key changed in place, even when properly signed", async () => {
    const c = await chain();
    const l = parseDeviceList(c.v4);
    const fresh = await generateDeviceKeys(c.provider, "x");
    const reuse = structuredClone(l);
    reuse.version = 5n;
    reuse.previousHash = c.provider.sha256(c.v4.deviceList);
    reuse.devices.splice(1, 0, { ...reuse.devices[0], deviceId: 2, signingKey: fresh.signingKey, dhKey: fresh.dhKey, dhKeySignature: fresh.dhKeySignature });
    const reused = await signDeviceList(c.provider, reuse, c.s1);
    expect(await problem(() => verifyDeviceListChain(c.provider, { accountId: "alice", trusted: c.v4, history: [reused], current: reused }))).toBe(
      "illegal-change",
    );
    const rekey = structuredClone(l);
    rekey.version = 5n;
    rekey.previousHash = c.provider.sha256(c.v4.deviceList);
    rekey.devices[1] = { ...rekey.devices[1], signingKey: fresh.signingKey, dhKey: fresh.dhKey, dhKeySignature: fresh.dhKeySignature };
    const rekeyed = await signDeviceList(c.provider, rekey, c.s1);
    expect(await problem(() => verifyDeviceListChain(c.provider, { accountId: "alice", trusted: c.v4, history: [rekeyed], current: rekeyed }))).toBe(
      "illegal-change",
    );
  });
  it("catches a version that adds or removes more than one device, or none, and devices out of id order", async () => {
    const c = await chain();
    const A = { accountId: "alice", trusted: c.v4 };
    const l4 = parseDeviceList(c.v4);
    const next = async (devices: typeof l4.devices, nextDeviceId = l4.nextDeviceId) => {
      const l = structuredClone(l4);
      l.version = 5n;
      l.previousHash = c.provider.sha256(c.v4.deviceList);
      l.devices = devices;
      l.nextDeviceId = nextDeviceId;
      return signDeviceList(c.provider, l, c.s1);
    };
    const id = (n: number, k: GeneratedDeviceKeys) => ({
      ...l4.devices[0],
      deviceId: n,
      signingKey: k.signingKey,
      dhKey: k.dhKey,
      dhKeySignature: k.dhKeySignature,
    });
    const x = await generateDeviceKeys(c.provider, "x");
    const y = await generateDeviceKeys(c.provider, "y");
    const twoAdded = await next([...l4.devices, id(4, x), id(5, y)], 6);
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, history: [twoAdded], current: twoAdded }))).toBe("illegal-change");
    const noChange = await next([...l4.devices]);
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, history: [noChange], current: noChange }))).toBe("illegal-change");
    const swap = await next([l4.devices[0], id(4, x)], 5);
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, history: [swap], current: swap }))).toBe("illegal-change");
    const unordered = await next([id(4, x), ...l4.devices], 5);
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, history: [unordered], current: unordered }))).toBe("illegal-change");
    // The same one-device link in id order verifies.
    const ordered = await next([...l4.devices, id(4, x)], 5);
    expect(await problem(() => verifyDeviceListChain(c.provider, { ...A, history: [ordered], current: ordered }))).toBe("none");
    // Two removals at once.
    const l3 = parseDeviceList(c.v3);
    l3.version = 4n;
    l3.previousHash = c.provider.sha256(c.v3.deviceList);
    l3.devices = [l3.devices[0]];
    const twoRemoved = await signDeviceList(c.provider, l3, c.s1);
    expect(await problem(() => verifyDeviceListChain(c.provider, { accountId: "alice", trusted: c.v3, history: [twoRemoved], current: twoRemoved }))).toBe(
      "illegal-change",
    );
  });
});

describe("DirectoryCache", () => {
  it("reports added and removed devices against the cached list, and expires by TTL", async () => {
    const c = await chain();
    let now = 0;
    const cache = new DirectoryCache(c.provider, { ttlMs: 1000, now: () => now });
    expect(cache.refreshRequest("alice")).toEqual({ accountId: "alice", historyAfterVersion: 0n });
    expect((await cache.update("alice", { deviceList: c.v2, history: [c.v1, c.v2] })).changes).toEqual([]);
    expect(cache.refreshRequest("alice").historyAfterVersion).toBe(2n);
    const r3 = await cache.update("alice", { deviceList: c.v3, history: [c.v3] });
    expect(r3.changes.map((x) => [x.kind, x.deviceId])).toEqual([["device-added", 3]]);
    expect(cache.isFresh("alice")).toBe(true);
    now = 1000;
    expect(cache.isFresh("alice")).toBe(false);
    const r4 = await cache.update("alice", { deviceList: c.v4, history: [c.v4] });
    expect(r4.changes.map((x) => [x.kind, x.deviceId])).toEqual([["device-removed", 2]]);
    expect(cache.isFresh("alice")).toBe(true);
  });

  it("keeps the trusted list when a refresh fails verification", async () => {
    const c = await chain();
    const cache = new DirectoryCache(c.provider);
    await cache.update("alice", { deviceList: c.v4, history: [c.v1, c.v2, c.v3, c.v4] });
    await expect(cache.update("alice", { deviceList: c.v3, history: [] })).rejects.toThrow(DeviceListVerificationError);
    expect(cache.get("alice")?.list.version).toBe(4n);
  });

  it("reports an identity key change when a list that does not continue the chain is accepted from the start", async () => {
    const c = await chain();
    const cache = new DirectoryCache(c.provider);
    await cache.update("alice", { deviceList: c.v1, history: [c.v1] });
    // A different account history (e.g. the account was re-registered): device 1 has new keys.
    const k: GeneratedDeviceKeys = await generateDeviceKeys(c.provider, "phone");
    const other: SignedDeviceList = await createFirstDeviceList(c.provider, { accountId: "alice", device: k, nowMs: T });
    await expect(cache.update("alice", { deviceList: other, history: [] })).rejects.toThrow(DeviceListVerificationError);
    const r = await cache.update("alice", { deviceList: other, history: [other] }, { verifyFromStart: true });
    expect(r.changes.map((x) => [x.kind, x.deviceId])).toEqual([["identity-key-changed", 1]]);
  });
});
