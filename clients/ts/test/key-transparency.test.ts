/**
 * Key transparency on the client, against a real server: a genuine list passes and moves the
 * stored tree head; a list the log does not vouch for (no proof, a wrong audit path, a head
 * not signed by the log key, a log key that changed, a head inconsistent with the one the
 * device saw) fails with the named problem and leaves the stored head alone; and a Messenger
 * shown such a list refuses to use it, saying so in a directory-untrusted event.
 */
import { describe, expect, it } from "vitest";
import { clone } from "@bufbuild/protobuf";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Interceptor } from "@connectrpc/connect";
import { GetDeviceListResponseSchema, type GetDeviceListResponse } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { SignedTreeHeadSchema } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import { createTestAccount } from "@sealpost/test-support";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { KeyTransparency, TransparencyError } from "../src/directory/key-transparency.js";
import { auditLog } from "../src/directory/log-audit.js";
import { parseDeviceList } from "../src/directory/device-list-changes.js";
import { MemoryConversationStore } from "../src/store/memory-conversation-store.js";
import { ServerApi } from "../src/transport/server-api.js";
import { createDevice, uniqueId } from "./messenger-helpers.js";
import { useMessengerHarness } from "./support/messenger-harness.js";

const server = useMessengerHarness();
const p = createNodeProvider();

async function setup() {
  const account = await createTestAccount(server.url, uniqueId("kt"), { oneTimePrekeys: 1 });
  const api = new ServerApi({ baseUrl: server.url, provider: p, now: Date.now });
  const store = new MemoryConversationStore();
  const kt = new KeyTransparency(api, p, store);
  const res = await api.open.getDeviceList({ accountId: account.accountId });
  const version = parseDeviceList(res.deviceList!).version;
  const check = (r: GetDeviceListResponse) => kt.verify(account.accountId, version, r.deviceList!.deviceList, r.transparency);
  const problem = (r: GetDeviceListResponse) =>
    check(r).then(
      () => "accepted",
      (e) => (e instanceof TransparencyError ? e.problem : `unexpected ${e}`),
    );
  return { api, store, res, check, problem };
}

const altered = (res: GetDeviceListResponse, change: (r: GetDeviceListResponse) => void) => {
  const r = clone(GetDeviceListResponseSchema, res);
  change(r);
  return r;
};

describe("KeyTransparency", () => {
  it("accepts a list in the log and keeps the log key and the head it verified", async () => {
    const { store, res, check } = await setup();
    await check(res);
    const kept = await store.getTransparency();
    expect(kept?.treeSize).toBe(Number(res.transparency!.treeHead!.treeSize));
    expect(Buffer.from(kept!.rootHash).equals(Buffer.from(res.transparency!.treeHead!.rootHash))).toBe(true);
    await check(res); // the same head again
  });

  it("names what is wrong with a list the log does not vouch for, and keeps the head it had", async () => {
    const { store, res, check, problem } = await setup();
    await check(res);
    const before = await store.getTransparency();
    expect(await problem(altered(res, (r) => (r.transparency = undefined)))).toBe("missing-proof");
    expect(await problem(altered(res, (r) => (r.transparency!.auditPath[0][0] ^= 1)))).toBe("not-included");
    expect(await problem(altered(res, (r) => (r.transparency!.leafIndex += 1n)))).toBe("not-included");
    expect(await problem(altered(res, (r) => (r.transparency!.treeHead!.signature[5] ^= 1)))).toBe("bad-tree-head");
    expect(await problem(altered(res, (r) => (r.transparency!.treeHead!.timestampMs += 1n)))).toBe("bad-tree-head");
    expect(await store.getTransparency()).toEqual(before);
  });

  it("a head that is not consistent with the one the device saw is a split view", async () => {
    const { store, res, problem } = await setup();
    const head = res.transparency!.treeHead!;
    const logKey = (await new ServerApi({ baseUrl: server.url, provider: p, now: Date.now }).open.getTreeHead({})).logKey;
    // The device once saw a head of the same size with another root (a forked log) ...
    await store.setTransparency({
      logKey,
      treeSize: Number(head.treeSize),
      rootHash: new Uint8Array(32).fill(9),
      timestampMs: 1,
      signature: new Uint8Array(64),
    });
    expect(await problem(res)).toBe("inconsistent-log");
    // ... or a smaller head that is not a prefix of this one.
    await store.setTransparency({ logKey, treeSize: 1, rootHash: new Uint8Array(32).fill(9), timestampMs: 1, signature: new Uint8Array(64) });
    expect(await problem(res)).toBe("inconsistent-log");
  });

  it("a log key other than the first one seen is an attack", async () => {
    const { store, res, problem } = await setup();
    await store.setTransparency({
      logKey: await p.ed25519PublicKey(new Uint8Array(32).fill(1)),
      treeSize: 1,
      rootHash: new Uint8Array(32),
      timestampMs: 1,
      signature: new Uint8Array(64),
    });
    expect(await problem(res)).toBe("log-key-changed");
  });
});

describe("gossip of tree heads", () => {
  it("a contact's head that carries another signature, or disagrees with this device's log, is reported", async () => {
    const { store, res, check, api } = await setup();
    await check(res);
    const kt = new KeyTransparency(api, p, store);
    const head = (await kt.latestHead())!;
    await kt.checkGossip(head); // the same head: fine
    const forged = clone(SignedTreeHeadSchema, head);
    forged.signature[0] ^= 1;
    expect(await kt.checkGossip(forged).catch((e) => e.problem)).toBe("log-key-changed");
    const kept = (await store.getTransparency())!;
    await store.setTransparency({ ...kept, rootHash: new Uint8Array(32).fill(3) });
    expect(await kt.checkGossip(head).catch((e) => e.problem)).toBe("inconsistent-log");
  });

  it("heads travel with texts between Messengers; one that disagrees with the receiver's view raises directory-untrusted", async () => {
    const alice = await createDevice(server.url, uniqueId("kt-gossip-a"));
    const bob = await createDevice(server.url, uniqueId("kt-gossip-b"));
    alice.m.start();
    bob.m.start();
    try {
      await alice.m.sendText(bob.m.accountId, "first");
      await bob.log.wait("message", (e) => e.message.body.kind === "text");
      expect(bob.log.of("directory-untrusted")).toEqual([]);
      // Bob's view of the log now disagrees with the one Alice is shown (as if the server forked it).
      const kept = (await bob.stores.store.getTransparency())!;
      await bob.stores.store.setTransparency({ ...kept, treeSize: 1, rootHash: new Uint8Array(32).fill(3) });
      await alice.m.sendText(bob.m.accountId, "second");
      const untrusted = await bob.log.wait("directory-untrusted", (e) => e.accountId === alice.m.accountId);
      expect(untrusted.problem).toBe("inconsistent-log");
      expect(untrusted.detail).toMatch(/^tree head from /);
    } finally {
      await alice.m.close();
      await bob.m.close();
    }
  });
});

describe("the own-account monitor", () => {
  async function monitorSetup(interceptors: Interceptor[] = []) {
    const account = await createTestAccount(server.url, uniqueId("kt-mon"), { devices: 2, oneTimePrekeys: 1 });
    const api = new ServerApi({
      baseUrl: server.url,
      provider: p,
      now: Date.now,
      transport: (baseUrl, base) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors: [...base, ...interceptors] }),
    });
    const store = new MemoryConversationStore();
    const kt = new KeyTransparency(api, p, store);
    const res = await api.open.getDeviceList({ accountId: account.accountId, historyAfterVersion: 0n });
    const versions = new Map([...res.history].map((s) => [parseDeviceList(s).version, p.sha256(s.deviceList)] as const));
    return { account, api, store, kt, versions };
  }

  it("reads every leaf once, in pages, and finds only versions the account made", async () => {
    const { account, store, kt, versions } = await monitorSetup();
    expect([...versions.keys()]).toEqual([1n, 2n]);
    const first = await kt.monitor(account.accountId, versions, 3);
    expect(first.read).toBe(first.size);
    expect((await store.getTransparency())?.monitored?.size).toBe(first.size);
    const again = await kt.monitor(account.accountId, versions, 3);
    expect(again.read).toBe(again.size - first.size);
  });

  it("a version of its own account it never made is unknown-own-version", async () => {
    const { account, kt, versions } = await monitorSetup();
    versions.delete(2n);
    const err = await kt.monitor(account.accountId, versions).catch((e) => e);
    expect(err).toBeInstanceOf(TransparencyError);
    expect(err.problem).toBe("unknown-own-version");
  });

  it("leaves that do not make up the signed head are inconsistent-log", async () => {
    const lie: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (!res.stream && !req.stream && req.method.name === "GetLogEntries") {
        const m = res.message as unknown as { entries: { listHash: Uint8Array }[] };
        if (m.entries.length) m.entries[0].listHash = new Uint8Array(32).fill(7);
      }
      return res;
    };
    const { account, kt, versions } = await monitorSetup([lie]);
    const err = await kt.monitor(account.accountId, versions).catch((e) => e);
    expect(err).toBeInstanceOf(TransparencyError);
    expect(["inconsistent-log", "unknown-own-version"]).toContain(err.problem);
  });
});

describe("auditLog", () => {
  it("a genuine log passes; a server that changes a leaf is caught", async () => {
    await createTestAccount(server.url, uniqueId("kt-audit"), { devices: 2, oneTimePrekeys: 1 });
    const genuine = await auditLog(new ServerApi({ baseUrl: server.url, provider: p, now: Date.now }), p, { pageSize: 2 });
    expect(genuine.problems).toEqual([]);
    expect(genuine.leaves).toBeGreaterThanOrEqual(2);
    const lie: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (!res.stream && !req.stream && req.method.name === "GetLogEntries") {
        const m = res.message as unknown as { entries: { version: bigint }[] };
        if (m.entries.length) m.entries[0].version += 5n;
      }
      return res;
    };
    const api = new ServerApi({
      baseUrl: server.url,
      provider: p,
      now: Date.now,
      transport: (baseUrl, base) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors: [...base, lie] }),
    });
    const lied = await auditLog(api, p, { pageSize: 2 });
    expect(lied.problems).toContain(`the log's ${lied.leaves} leaves do not make up its signed root`);
    expect(lied.problems.some((x) => /jumps from version/.test(x))).toBe(true);
  });
});

describe("a Messenger shown a list the log does not vouch for", () => {
  it("refuses to send to that account and reports directory-untrusted (not-included)", async () => {
    const bob = await createDevice(server.url, uniqueId("kt-bob"));
    // Alice's transport alters the audit path of every GetDeviceList answer about Bob.
    const tamper: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (
        !res.stream &&
        !req.stream &&
        req.method.name === "GetDeviceList" &&
        (req.message as unknown as { accountId: string }).accountId === bob.m.accountId
      ) {
        const m = res.message as GetDeviceListResponse;
        if (m.transparency?.auditPath.length) m.transparency.auditPath[0] = new Uint8Array(32);
      }
      return res;
    };
    const alice = await createDevice(server.url, uniqueId("kt-alice"), {
      transport: (baseUrl, interceptors) =>
        createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors: [...interceptors, tamper] }),
    });
    alice.m.start();
    try {
      const err = await alice.m.sendText(bob.m.accountId, "hello?").catch((e) => e);
      const untrusted = await alice.log.wait("directory-untrusted", (e) => e.accountId === bob.m.accountId);
      expect(untrusted.problem).toBe("not-included");
      // The send fails (or is reported failed) rather than going to devices the log does not vouch for.
      if (!(err instanceof Error)) await alice.log.wait("send-failed");
    } finally {
      await alice.m.close();
      await bob.m.close();
    }
  });

  it("a started Messenger reads the log for its own account", async () => {
    const carol = await createDevice(server.url, uniqueId("kt-carol"));
    carol.m.start();
    try {
      for (let i = 0; i < 200 && !(await carol.stores.store.getTransparency())?.monitored; i++) await new Promise((r) => setTimeout(r, 25));
      const kept = await carol.stores.store.getTransparency();
      expect(kept?.monitored?.size).toBeGreaterThan(0);
      expect(kept!.monitored!.size).toBeLessThanOrEqual(kept!.treeSize);
      expect(carol.log.of("directory-untrusted")).toEqual([]);
    } finally {
      await carol.m.close();
    }
  });
});
