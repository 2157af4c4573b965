/**
 * One-time prekeys are handed out exactly once under concurrent claims through two server
 * instances: hundreds of claims race for fewer keys than claims; no key id is seen twice,
 * every uploaded key is handed out, and the rest get bundles without one.
 */
import { describe, expect, it } from "vitest";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { createTestAccount, generateTestPrekeys, plainTransport, prekeyMessages } from "@sealpost/test-support";
import { useTwoInstances } from "./directory-helpers.js";

const servers = useTwoInstances();

describe("concurrent one-time prekey claims", () => {
  it("never hands out one key twice across two instances (400 keys, 480 claims)", async () => {
    const KEYS = 400;
    const CLAIMS = 480;
    const alice = await createTestAccount(servers.a.url, "claim-alice", { oneTimePrekeys: 0 });
    const uploaded = (await generateTestPrekeys(alice.provider, alice.devices[0].keys, KEYS, 1000)).oneTime;
    for (let i = 0; i < KEYS; i += 100) {
      await alice.devices[0].directory.uploadPrekeys({
        oneTimePrekeys: prekeyMessages({ ...(await generateTestPrekeys(alice.provider, alice.devices[0].keys, 0)), oneTime: uploaded.slice(i, i + 100) })
          .oneTimePrekeys,
      });
    }
    expect((await alice.devices[0].directory.getPrekeyCount({})).oneTimePrekeyCount).toBe(KEYS);

    // Four claimer devices, each with a client on both instances.
    const claimers = await Promise.all([0, 1, 2, 3].map((i) => createTestAccount(servers.b.url, `claim-bob-${i}`)));
    const clients = claimers.flatMap((c) =>
      [servers.a, servers.b].map((s) => {
        const auth: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${c.devices[0].token}`), next(req));
        return createClient(DirectoryService, plainTransport(s.url, "connect", [auth]));
      }),
    );
    const results = await Promise.all(Array.from({ length: CLAIMS }, (_, i) => clients[i % clients.length].claimKeyBundles({ accountId: "claim-alice" })));

    const got = results.map((r) => r.bundles[0].oneTimePrekey).filter((k) => k !== undefined);
    const ids = got.map((k) => k.keyId);
    expect(new Set(ids).size).toBe(ids.length); // no key handed out twice
    expect(ids.length).toBe(KEYS); // every key handed out
    expect(results.filter((r) => !r.bundles[0].oneTimePrekey)).toHaveLength(CLAIMS - KEYS);
    const byId = new Map(uploaded.map((k) => [k.keyId, Buffer.from(k.publicKey).toString("hex")]));
    for (const k of got) expect(Buffer.from(k.publicKey).toString("hex")).toBe(byId.get(k.keyId));
    expect((await alice.devices[0].directory.getPrekeyCount({})).oneTimePrekeyCount).toBe(0);
    // Nothing left behind in the bucket (claims delete by sequence, no tombstones).
    const info = await servers.a.context.nats.jsm.streams.info("KV_sp_one_time_prekeys", { subjects_filter: "$KV.sp_one_time_prekeys.claim-alice.>" });
    expect(info.state.subjects ?? {}).toEqual({});
  });
});
