/**
 * Device-list changes the server must refuse: forged (bad signature, signer not in the current
 * list, a revoked device signing), replayed or stale (old version, skipped version, wrong
 * previous_hash), for another account, reusing a device id, rewriting an entry, over the
 * device limit, and a lost race between two instances. Each rejection has its precise code and
 * message and leaves the stored state unchanged.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { SignedDeviceListSchema, type DeviceList, type SignedDeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { createTestAccount, plainTransport, startTestNats, startTestServer, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { generateDeviceKeys, linkDeviceChange, parseDeviceList, revokeDeviceChange, signDeviceList, type DeviceSigner } from "@sealpost/client/directory";
import { directoryState, expectConnectError } from "./directory-helpers.js";

let nats: TestNats;
let server: RunningServer;
let other: RunningServer;

beforeAll(async () => {
  nats = await startTestNats();
  [server, other] = await Promise.all([startTestServer(nats.url), startTestServer(nats.url, {}, { directory: { limits: { maxDevicesPerAccount: 3 } } })]);
});
afterAll(async () => {
  await Promise.all([server?.close(), other?.close()]);
  await nats?.stop();
});

const signerOf = (acct: TestAccount, i = 0): DeviceSigner => ({ deviceId: acct.devices[i].address.deviceId, signingSeed: acct.devices[i].keys.signingSeed });

/** Re-signs `signed` after editing its list. */
async function edit(
  acct: TestAccount,
  signed: SignedDeviceList,
  change: (l: DeviceList) => void | Promise<void>,
  signer = signerOf(acct),
): Promise<SignedDeviceList> {
  const list = parseDeviceList(signed);
  await change(list);
  return signDeviceList(acct.provider, list, signer);
}

async function rejects(acct: TestAccount, call: () => Promise<unknown>, code: Code, message: string | RegExp) {
  const before = await directoryState(server.url, acct);
  await expectConnectError(call(), code, message);
  expect(await directoryState(server.url, acct)).toEqual(before);
}

describe("forged and replayed device-list changes", () => {
  it("rejects a change with a bad signature", async () => {
    const alice = await createTestAccount(server.url, "chg-badsig", { devices: 2, oneTimePrekeys: 2 });
    const { deviceList } = await linkDeviceChange(alice.provider, alice.deviceList, signerOf(alice), await generateDeviceKeys(alice.provider, "x"), Date.now());
    const forged = create(SignedDeviceListSchema, { ...deviceList, signature: deviceList.signature.map((b, i) => (i === 0 ? b ^ 1 : b)) });
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: forged }),
      Code.PermissionDenied,
      "device list signature by device 1 does not verify",
    );
  });

  it("rejects a change signed by a key that is not the claimed signer's", async () => {
    const alice = await createTestAccount(server.url, "chg-wrongkey", { devices: 2 });
    const intruder = await generateDeviceKeys(alice.provider, "intruder");
    const { deviceList } = await linkDeviceChange(alice.provider, alice.deviceList, { deviceId: 1, signingSeed: intruder.signingSeed }, intruder, Date.now());
    await rejects(
      alice,
      () => alice.devices[1].directory.linkDevice({ deviceList }),
      Code.PermissionDenied,
      "device list signature by device 1 does not verify",
    );
  });

  it("rejects a change whose signer is not in the current list (e.g. the new device signing itself in)", async () => {
    const alice = await createTestAccount(server.url, "chg-selfsign", { devices: 1 });
    const ghost = await generateDeviceKeys(alice.provider, "ghost");
    const { deviceList } = await linkDeviceChange(alice.provider, alice.deviceList, { deviceId: 2, signingSeed: ghost.signingSeed }, ghost, Date.now());
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList }),
      Code.PermissionDenied,
      "signer device 2 is not in the current device list (version 1)",
    );
  });

  it("rejects a change signed by a revoked device", async () => {
    const alice = await createTestAccount(server.url, "chg-revoked", { devices: 3 });
    const v3 = await revokeDeviceChange(alice.provider, alice.deviceList, signerOf(alice), 3, Date.now());
    await alice.devices[0].directory.revokeDevice({ deviceList: v3 });
    const revoked3 = alice.devices.splice(2, 1)[0];
    const { deviceList } = await linkDeviceChange(
      alice.provider,
      v3,
      { deviceId: 3, signingSeed: revoked3.keys.signingSeed },
      await generateDeviceKeys(alice.provider, "evil"),
      Date.now(),
    );
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList }),
      Code.PermissionDenied,
      "signer device 3 is not in the current device list (version 4)",
    );
  });

  it("rejects a replayed change (its version is no longer next)", async () => {
    const alice = await createTestAccount(server.url, "chg-replay", { devices: 2 });
    const v4 = await revokeDeviceChange(alice.provider, alice.deviceList, signerOf(alice), 2, Date.now());
    await alice.devices[0].directory.revokeDevice({ deviceList: v4 });
    alice.devices.splice(1, 1);
    // Replaying the exact LinkDevice that made version 2.
    const history = await alice.devices[0].directory.getDeviceList({ accountId: "chg-replay", historyAfterVersion: 0n });
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: history.history[1] }),
      Code.FailedPrecondition,
      "device list version 2 is not newer than the current version 3 (stale or replayed change)",
    );
    await rejects(
      alice,
      () => alice.devices[0].directory.revokeDevice({ deviceList: v4 }),
      Code.FailedPrecondition,
      "device list version 3 is not newer than the current version 3 (stale or replayed change)",
    );
  });

  it("rejects a version that skips ahead and a wrong previous_hash", async () => {
    const alice = await createTestAccount(server.url, "chg-chain", { devices: 1 });
    const { deviceList } = await linkDeviceChange(alice.provider, alice.deviceList, signerOf(alice), await generateDeviceKeys(alice.provider, "x"), Date.now());
    const skip = await edit(alice, deviceList, (l) => void (l.version = 5n));
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: skip }),
      Code.FailedPrecondition,
      "device list version 5 skips ahead: the next version must be 2",
    );
    const badHash = await edit(alice, deviceList, (l) => void (l.previousHash = new Uint8Array(32).fill(7)));
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: badHash }),
      Code.FailedPrecondition,
      "device list previous_hash does not match version 1",
    );
  });

  it("rejects a change for another account", async () => {
    const alice = await createTestAccount(server.url, "chg-alice", { devices: 1 });
    const mallory = await createTestAccount(server.url, "chg-mallory", { devices: 1 });
    const { deviceList } = await linkDeviceChange(alice.provider, alice.deviceList, signerOf(alice), await generateDeviceKeys(alice.provider, "x"), Date.now());
    await rejects(
      alice,
      () => mallory.devices[0].directory.linkDevice({ deviceList }),
      Code.PermissionDenied,
      "device list is for account chg-alice, but the caller acts for chg-mallory",
    );
  });

  it("rejects reusing a device id, rewriting an entry, and the wrong kind of change", async () => {
    const alice = await createTestAccount(server.url, "chg-shape", { devices: 2 });
    const v3 = await revokeDeviceChange(alice.provider, alice.deviceList, signerOf(alice), 2, Date.now());
    await alice.devices[0].directory.revokeDevice({ deviceList: v3 });
    alice.devices.splice(1, 1);
    const { deviceList } = await linkDeviceChange(alice.provider, v3, signerOf(alice), await generateDeviceKeys(alice.provider, "x"), Date.now());
    const reuse = await edit(alice, deviceList, (l) => {
      l.devices[1].deviceId = 2;
      l.nextDeviceId = 3;
    });
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: reuse }),
      Code.InvalidArgument,
      "device id 2 was already allocated; ids are never reused (next is 3)",
    );
    const rekey = await edit(alice, deviceList, async (l) => void (l.devices[0].dhKey = (await generateDeviceKeys(alice.provider, "y")).dhKey));
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: rekey }),
      Code.InvalidArgument,
      "device 1 changed its entry; a change may only add or remove a device",
    );
    await rejects(
      alice,
      () => alice.devices[0].directory.revokeDevice({ deviceList }),
      Code.InvalidArgument,
      "RevokeDevice must remove exactly one device and add none (removes 0, adds 1)",
    );
    const last = await revokeDeviceChange(alice.provider, v3, signerOf(alice), 1, Date.now());
    await rejects(
      alice,
      () => alice.devices[0].directory.revokeDevice({ deviceList: last }),
      Code.InvalidArgument,
      "device list must hold at least one device",
    );
    const badDh = await edit(alice, deviceList, (l) => void (l.devices[1].dhKeySignature = new Uint8Array(64)));
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: badDh }),
      Code.PermissionDenied,
      "device 3: dh_key_signature does not verify under its signing_key",
    );
    const garbage = create(SignedDeviceListSchema, { deviceList: Uint8Array.of(0xff, 0xff), signerDeviceId: 1, signature: new Uint8Array(64) });
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: garbage }),
      Code.InvalidArgument,
      "device_list.device_list does not parse as a sealpost.directory.v1.DeviceList",
    );
    const huge = create(SignedDeviceListSchema, { deviceList: new Uint8Array(16 * 1024 + 1), signerDeviceId: 1, signature: new Uint8Array(64) });
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList: huge }),
      Code.ResourceExhausted,
      "device_list.device_list is 16385 bytes; at most 16384",
    );
  });

  it("enforces the device limit", async () => {
    const alice = await createTestAccount(other.url, "chg-limit", { devices: 3 });
    const { deviceList } = await linkDeviceChange(
      alice.provider,
      alice.deviceList,
      signerOf(alice),
      await generateDeviceKeys(alice.provider, "fourth"),
      Date.now(),
    );
    await rejects(
      alice,
      () => alice.devices[0].directory.linkDevice({ deviceList }),
      Code.ResourceExhausted,
      "device list holds 4 devices; an account may have at most 3",
    );
  });

  it("lets exactly one of two concurrent changes through two instances win", async () => {
    const alice = await createTestAccount(server.url, "chg-race", { devices: 1 });
    const p = alice.provider;
    const c1 = (await linkDeviceChange(p, alice.deviceList, signerOf(alice), await generateDeviceKeys(p, "one"), Date.now())).deviceList;
    const c2 = (await linkDeviceChange(p, alice.deviceList, signerOf(alice), await generateDeviceKeys(p, "two"), Date.now() + 1)).deviceList;
    const auth: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${alice.devices[0].token}`), next(req));
    const onOther = createClient(DirectoryService, plainTransport(other.url, "connect", [auth]));
    const results = await Promise.allSettled([alice.devices[0].directory.linkDevice({ deviceList: c1 }), onOther.linkDevice({ deviceList: c2 })]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const loser = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(String(loser.reason.message)).toMatch(/changed concurrently|not newer than the current version 2/);
    const now = await alice.devices[0].directory.getDeviceList({ accountId: "chg-race", historyAfterVersion: 0n });
    const winner = results[0].status === "fulfilled" ? c1 : c2;
    expect(Buffer.from(now.deviceList!.deviceList).equals(Buffer.from(winner.deviceList))).toBe(true);
    expect(now.history.map((h) => parseDeviceList(h).version)).toEqual([1n, 2n]);
    expect(Buffer.from(now.history[1].deviceList).equals(Buffer.from(winner.deviceList))).toBe(true);
  });
});
