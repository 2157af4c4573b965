/**
 * Device lists are served from each instance's memory; a change returns only after every
 * live instance applied it. Three instances on one NATS, caches warmed on each: after
 * RevokeDevice returns, no instance accepts the revoked device's token, not once; after
 * LinkDevice returns, every instance accepts the new device's. An instance that cannot
 * confirm (here: a registered instance that never answers) makes the change wait out the
 * cache lease instead of returning early.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { startTestNats, startTestServer, createTestAccount, type TestNats, type TestDevice } from "@sealpost/test-support";
import { createConnectTransport } from "@connectrpc/connect-node";
import { revokeDeviceChange } from "@sealpost/client/directory";
import type { RunningServer } from "../src/server.js";
import type { Logger } from "../src/logger.js";

let nats: TestNats;
let servers: RunningServer[] = [];
const logged: string[] = [];
const recordingLog: Logger = {
  debug() {},
  info: (msg) => void logged.push(msg),
  warn: (msg) => void logged.push(msg),
  error: (msg) => void logged.push(msg),
  child: () => recordingLog,
};

beforeAll(async () => {
  nats = await startTestNats();
  servers = await Promise.all([0, 1, 2].map((i) => startTestServer(nats.url, {}, i === 0 ? { log: recordingLog } : {})));
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await nats?.stop();
});

/** A DirectoryService client of `device` on the instance at `url`. */
function directoryOf(device: TestDevice, url: string) {
  return createClient(
    DirectoryService,
    createConnectTransport({
      baseUrl: url,
      httpVersion: "2",
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${device.token}`);
          return next(req);
        },
      ],
    }),
  );
}

/** GetPrekeyCount needs a listed device: the cheapest authenticated call. */
function authedCall(device: TestDevice, url: string) {
  return directoryOf(device, url)
    .getPrekeyCount({})
    .then(
      () => "ok",
      (e) => Code[ConnectError.from(e).code],
    );
}

describe("device lists in memory, with a barrier on change", () => {
  it("after RevokeDevice returns, every instance refuses the revoked token at once (caches were warm)", async () => {
    const alice = await createTestAccount(servers[0].url, "barrier-alice", { devices: 3, oneTimePrekeys: 1 });
    const [keep, gone, alsoGone] = alice.devices;
    for (let round = 0; round < 2; round++) {
      const victim = round === 0 ? gone : alsoGone;
      // Warm every instance's cache with the list that still holds the victim.
      for (const s of servers) for (let i = 0; i < 3; i++) expect(await authedCall(victim, s.url)).toBe("ok");
      const change = await revokeDeviceChange(
        alice.provider,
        alice.deviceList,
        { deviceId: keep.address.deviceId, signingSeed: keep.keys.signingSeed },
        victim.address.deviceId,
        Date.now(),
      );
      // Revoke through a different instance each round.
      await directoryOf(keep, servers[round + 1].url).revokeDevice({ deviceList: change });
      alice.deviceList = change;
      const answers = await Promise.all(servers.flatMap((s) => [authedCall(victim, s.url), authedCall(victim, s.url)]));
      expect(answers).toEqual(Array(6).fill("Unauthenticated"));
      // The remaining device is unaffected everywhere.
      expect(await Promise.all(servers.map((s) => authedCall(keep, s.url)))).toEqual(["ok", "ok", "ok"]);
    }
  });

  it("after LinkDevice returns, every instance accepts the new device (the account was cached before)", async () => {
    const bob = await createTestAccount(servers[1].url, "barrier-bob", { devices: 1, oneTimePrekeys: 1 });
    for (const s of servers) expect(await authedCall(bob.devices[0], s.url)).toBe("ok");
    const linked = await createTestAccount(servers[2].url, "barrier-carol", { devices: 2, oneTimePrekeys: 1 });
    // createTestAccount links device 2 right after creating the account; it authenticated on
    // instance 2. Every instance must know it at once.
    expect(await Promise.all(servers.map((s) => authedCall(linked.devices[1], s.url)))).toEqual(["ok", "ok", "ok"]);
  });

  it("waits out the lease when a registered instance does not confirm, and still completes", async () => {
    const dave = await createTestAccount(servers[0].url, "barrier-dave", { devices: 2, oneTimePrekeys: 1 });
    const [keep, gone] = dave.devices;
    const phantom = servers[0].context.layout.buckets.instances;
    await phantom.put("phantom-instance", new TextEncoder().encode("0"));
    for (const s of servers) expect(await authedCall(gone, s.url)).toBe("ok");
    const change = await revokeDeviceChange(
      dave.provider,
      dave.deviceList,
      { deviceId: keep.address.deviceId, signingSeed: keep.keys.signingSeed },
      gone.address.deviceId,
      Date.now(),
    );
    logged.length = 0;
    await directoryOf(keep, servers[0].url).revokeDevice({ deviceList: change });
    expect(logged).toContain("directory change: waiting out the cache lease of instances that did not confirm");
    expect(await Promise.all(servers.map((s) => authedCall(gone, s.url)))).toEqual(["Unauthenticated", "Unauthenticated", "Unauthenticated"]);
    await servers[0].context.nats.jsm.streams.purge("KV_sp_instances", { filter: "$KV.sp_instances.phantom-instance" });
  });
});
