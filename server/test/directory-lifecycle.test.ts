/**
 * The account / link / revoke lifecycle against a real nats-server and two server instances
 * sharing it: changes committed through one instance are seen by the other at once, a revoked
 * device is locked out everywhere, the signed history is served, and WatchDirectory streams
 * snapshot, additions, removals and prekey rotations.
 */
import { describe, expect, it } from "vitest";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { DirectoryChangeKind, DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { authenticateDevice, createTestAccount, generateTestPrekeys, plainTransport, prekeyMessages } from "@sealpost/test-support";
import { createDirectory } from "../src/directory/service.js";
import { generateDeviceKeys, linkDeviceChange, parseDeviceList, revokeDeviceChange, verifyDeviceListChain } from "@sealpost/client/directory";
import { expectConnectError, useTwoInstances } from "./directory-helpers.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const servers = useTwoInstances();

describe("account lifecycle across two instances", () => {
  it("creates, links through the other instance, serves the chain, claims bundles, revokes and locks out", async () => {
    const alice = await createTestAccount(servers.a.url, "life-alice", { devices: 1, oneTimePrekeys: 3 });
    const bob = await createTestAccount(servers.b.url, "life-bob");
    const openB = createClient(DirectoryService, plainTransport(servers.b.url));
    const p = alice.provider;
    const signer1 = { deviceId: 1, signingSeed: alice.devices[0].keys.signingSeed };

    // Link device 2 with a change signed by device 1, sent through instance B.
    const phone = await generateDeviceKeys(p, "phone");
    const link = await linkDeviceChange(p, alice.deviceList, signer1, phone, Date.now());
    const onB = createClient(
      DirectoryService,
      plainTransport(servers.b.url, "connect", [(next) => (req) => (req.header.set("authorization", `Bearer ${alice.devices[0].token}`), next(req))]),
    );
    const linked = await onB.linkDevice({ deviceList: link.deviceList });
    expect(linked.device).toMatchObject({ accountId: "life-alice", deviceId: 2 });
    expect(linked.version).toBe(2n);

    // The new device authenticates on A and publishes its prekeys.
    const phoneToken = await authenticateDevice(servers.a.url, { accountId: "life-alice", deviceId: 2 }, phone.signingSeed, p);
    const phoneClient = createClient(
      DirectoryService,
      plainTransport(servers.a.url, "connect", [(next) => (req) => (req.header.set("authorization", `Bearer ${phoneToken.token}`), next(req))]),
    );
    const phoneKeys = await generateTestPrekeys(p, phone, 2, 500);
    expect((await phoneClient.uploadPrekeys(prekeyMessages(phoneKeys))).oneTimePrekeyCount).toBe(2);

    // History: both versions, chained, oldest first.
    const full = await openB.getDeviceList({ accountId: "life-alice", historyAfterVersion: 0n });
    expect(full.history.map((h) => parseDeviceList(h).version)).toEqual([1n, 2n]);
    expect(hex(full.history[0].deviceList)).toEqual(hex(alice.deviceList.deviceList));
    expect(hex(full.deviceList!.deviceList)).toEqual(hex(link.deviceList.deviceList));
    // What the server serves verifies with the client SDK's chain check.
    expect((await verifyDeviceListChain(p, { accountId: "life-alice", history: full.history, current: full.deviceList! })).list.version).toBe(2n);
    expect((await openB.getDeviceList({ accountId: "life-alice", historyAfterVersion: 1n })).history).toHaveLength(1);
    expect((await openB.getDeviceList({ accountId: "life-alice" })).history).toHaveLength(0);

    // Bob fetches bundles for all of Alice's devices in one call.
    const bundles = await bob.devices[0].directory.claimKeyBundles({ accountId: "life-alice" });
    expect(bundles.deviceListVersion).toBe(2n);
    expect(bundles.bundles.map((x) => x.identity!.deviceId)).toEqual([1, 2]);
    expect(hex(bundles.bundles[1].identity!.signingKey)).toEqual(hex(phone.signingKey));
    expect(bundles.bundles[1].oneTimePrekey?.keyId).toBe(500);
    expect(hex(bundles.bundles[1].kemPrekey!.publicKey)).toEqual(hex(phoneKeys.kem.publicKey));

    // Device 2 revokes itself through B; its token stops working on A at once.
    const revoke = await revokeDeviceChange(p, link.deviceList, { deviceId: 2, signingSeed: phone.signingSeed }, 2, Date.now());
    const revoked = await createClient(
      DirectoryService,
      plainTransport(servers.b.url, "connect", [(next) => (req) => (req.header.set("authorization", `Bearer ${phoneToken.token}`), next(req))]),
    ).revokeDevice({ deviceList: revoke });
    expect(revoked).toMatchObject({ device: { accountId: "life-alice", deviceId: 2 }, version: 3n });
    await expectConnectError(phoneClient.getPrekeyCount({}), Code.Unauthenticated, "device life-alice/2 is not in its account's device list (revoked)");
    await expectConnectError(
      authenticateDevice(servers.a.url, { accountId: "life-alice", deviceId: 2 }, phone.signingSeed, p),
      Code.NotFound,
      "device life-alice/2 is not in the account's current device list",
    );
    await expectConnectError(
      bob.devices[0].directory.claimKeyBundles({ accountId: "life-alice", deviceIds: [2] }),
      Code.NotFound,
      "device life-alice/2 is not in the account's current device list",
    );
    // Its one-time prekeys and signed prekeys are gone from storage.
    const keys: string[] = [];
    for await (const k of await servers.a.context.layout.buckets.oneTimePrekeys.keys("life-alice.2.*")) keys.push(k);
    expect(keys).toEqual([]);
    expect(await servers.a.context.layout.buckets.prekeys.get("life-alice.2")).toBeNull();
    // The remaining device still works; device ids are never reused.
    const again = await linkDeviceChange(p, revoke, signer1, await generateDeviceKeys(p, "tablet"), Date.now());
    expect(again.deviceId).toBe(3);
    expect((await alice.devices[0].directory.linkDevice({ deviceList: again.deviceList })).device?.deviceId).toBe(3);
  });

  it("streams snapshot, device added, prekeys rotated and device removed to a watcher on the other instance", async () => {
    const alice = await createTestAccount(servers.a.url, "watch-alice");
    const bob = await createTestAccount(servers.b.url, "watch-bob");
    const p = alice.provider;
    const abort = new AbortController();
    const stream = bob.devices[0].directory.watchDirectory({ accountIds: ["watch-alice", "watch-bob"] }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      const snaps = [(await stream.next()).value, (await stream.next()).value];
      expect(snaps.map((s) => [s.accountId, s.kind, s.deviceId])).toEqual([
        ["watch-alice", DirectoryChangeKind.SNAPSHOT, 0],
        ["watch-bob", DirectoryChangeKind.SNAPSHOT, 0],
      ]);
      const laptop = await generateDeviceKeys(p, "laptop");
      const link = await linkDeviceChange(p, alice.deviceList, { deviceId: 1, signingSeed: alice.devices[0].keys.signingSeed }, laptop, Date.now());
      await alice.devices[0].directory.linkDevice({ deviceList: link.deviceList });
      const added = (await stream.next()).value;
      expect([added.accountId, added.kind, added.deviceId]).toEqual(["watch-alice", DirectoryChangeKind.DEVICE_ADDED, 2]);
      expect(hex(added.deviceList.deviceList)).toEqual(hex(link.deviceList.deviceList));

      const rotated = await generateTestPrekeys(p, alice.devices[0].keys, 0);
      await alice.devices[0].directory.uploadPrekeys({ signedPrekey: prekeyMessages(rotated).signedPrekey });
      const rot = (await stream.next()).value;
      expect([rot.accountId, rot.kind, rot.deviceId]).toEqual(["watch-alice", DirectoryChangeKind.PREKEYS_ROTATED, 1]);

      const revoke = await revokeDeviceChange(p, link.deviceList, { deviceId: 1, signingSeed: alice.devices[0].keys.signingSeed }, 2, Date.now());
      await alice.devices[0].directory.revokeDevice({ deviceList: revoke });
      const removed = (await stream.next()).value;
      expect([removed.accountId, removed.kind, removed.deviceId]).toEqual(["watch-alice", DirectoryChangeKind.DEVICE_REMOVED, 2]);
      expect(parseDeviceList(removed.deviceList).version).toBe(3n);
    } finally {
      abort.abort();
    }
  });

  it("rejects a watch of an unknown account", async () => {
    const carol = await createTestAccount(servers.a.url, "watch-carol");
    const it = carol.devices[0].directory.watchDirectory({ accountIds: ["watch-carol", "no-such-account"] })[Symbol.asyncIterator]();
    await expectConnectError(it.next(), Code.NotFound, "account no-such-account not found");
  });

  it("runs revocation listeners before RevokeDevice answers", async () => {
    const directory = await createDirectory(servers.a.context);
    const calls: string[] = [];
    directory.onDeviceRevoked(async (acct, dev) => {
      await new Promise((r) => setTimeout(r, 20));
      calls.push(`${acct}/${dev}`);
    });
    const changed: string[] = [];
    const stop = directory.onDeviceListChanged((acct, cur) => changed.push(`${acct}@${cur.version}:${cur.deviceIds.join(",")}<${cur.nextDeviceId}`));
    try {
      const dave = await createTestAccount(servers.a.url, "listen-dave", { devices: 2 });
      const transport = createRouterTransport(({ service }) => service(DirectoryService, directory.impl), {
        router: { interceptors: [] },
      });
      const client = createClient(DirectoryService, transport);
      const revoke = await revokeDeviceChange(dave.provider, dave.deviceList, { deviceId: 1, signingSeed: dave.devices[0].keys.signingSeed }, 2, Date.now());
      await client.revokeDevice({ deviceList: revoke }, { headers: dave.devices[0].headers });
      expect(calls).toEqual(["listen-dave/2"]);
      expect(await directory.currentDeviceList("listen-dave")).toEqual({ version: 3n, deviceIds: [1], nextDeviceId: 3 });
      expect(await directory.currentDeviceList("listen-nobody")).toBeUndefined();
      await expect.poll(() => changed.at(-1)).toBe("listen-dave@3:1<3");
    } finally {
      stop();
      await directory.close();
    }
  });
});
