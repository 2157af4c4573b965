/**
 * Faults against the key transparency log: accounts are created through two instances while
 * nats-server restarts (same store) and one instance, a real child process, is killed with
 * SIGKILL. Afterwards no leaf was lost or moved (the log before the faults is a prefix of
 * the log after, leaf for leaf), every account's current version is in the log with an
 * inclusion proof that verifies, no version appears with two lists, and the surviving
 * instance and a fresh one serve the same tree.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createNodeProvider } from "@sealpost/client/crypto";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import {
  createTestAccount,
  plainTransport,
  spawnServerProcess,
  startTestNats,
  startTestServer,
  type ServerProcess,
  type TestNats,
} from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { leafHash, verifyInclusion } from "../../clients/ts/src/directory/merkle-proofs.js";
import { accountIndex, encodeLeaf, listHash } from "../src/transparency/transparency-log.js";

const TOKEN_SECRET = "test-secret-test-secret-test-secret!";
const p = createNodeProvider();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let nats: TestNats;
let a: RunningServer;
let victim: ServerProcess;

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  a = await startTestServer(nats.url, { tokenSecret: TOKEN_SECRET });
  victim = await spawnServerProcess({ NATS_URL: nats.url, SEALPOST_TOKEN_SECRET: TOKEN_SECRET });
});
afterAll(async () => {
  await victim?.kill();
  await a?.close();
  await nats?.stop();
});

/** Retries a call through any instance until it answers (NATS restarting, an instance gone). */
async function reliably<T>(urls: string[], call: (url: string) => Promise<T>, start = 0): Promise<T> {
  for (let attempt = start; attempt < start + 200; attempt++) {
    try {
      return await call(urls[attempt % urls.length]);
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.AlreadyExists) throw e;
      await sleep(100);
    }
  }
  throw new Error("no instance answered");
}

async function entries(url: string) {
  const dir = createClient(DirectoryService, plainTransport(url));
  const head = (await dir.getTreeHead({})).treeHead!;
  const out = [];
  for (let at = 0n; at < head.treeSize; ) {
    const page = await dir.getLogEntries({ start: at, count: 1000 });
    out.push(...page.entries.map((e) => `${hex(e.accountIndex)}.${e.version}.${hex(e.listHash)}`));
    at += BigInt(page.entries.length);
  }
  return { head, leaves: out.slice(0, Number(head.treeSize)) };
}

describe("key transparency log under faults", () => {
  it("loses and moves no leaf across a nats-server restart and an instance killed mid-traffic", async () => {
    const urls = () => [a.url, victim.url];
    const created: string[] = [];
    const create = async (i: number) => {
      const id = `ktf-${i}`;
      await reliably(urls(), (url) => createTestAccount(url, id, { oneTimePrekeys: 1 }), i).catch((err) => {
        // An earlier attempt created it and failed later (prekeys): the account is there.
        if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
      });
      created.push(id);
    };
    for (let i = 0; i < 10; i++) await create(i);
    const before = await entries(a.url);
    expect(before.leaves.length).toBeGreaterThanOrEqual(10);

    const restart = nats.restart!();
    for (let i = 10; i < 20; i++) await create(i);
    await restart;
    await victim.kill();
    for (let i = 20; i < 30; i++) await create(i);

    // Every account's current version is in the log (a read appends one whose append failed).
    for (const id of created) {
      const res = await reliably([a.url], (url) => createClient(DirectoryService, plainTransport(url)).getDeviceList({ accountId: id }));
      const kt = res.transparency!;
      const leaf = encodeLeaf({ accountIndex: accountIndex(id), version: 1n, listHash: listHash(res.deviceList!.deviceList) });
      expect(verifyInclusion(p, leafHash(p, leaf), Number(kt.leafIndex), Number(kt.treeHead!.treeSize), kt.auditPath, kt.treeHead!.rootHash), id).toBe(true);
    }

    const after = await entries(a.url);
    // Nothing lost or moved: the old log is a prefix of the new one, leaf for leaf.
    expect(after.leaves.slice(0, before.leaves.length)).toEqual(before.leaves);
    // No version with two different lists.
    const byVersion = new Map<string, string>();
    for (const l of after.leaves) {
      const [index, version, hash] = l.split(".");
      const k = `${index}.${version}`;
      if (byVersion.has(k)) expect(byVersion.get(k), k).toBe(hash);
      byVersion.set(k, hash);
    }
    expect(byVersion.size).toBeGreaterThanOrEqual(created.length);

    // A fresh instance replays the stream into the same tree.
    const fresh = await startTestServer(nats.url, { tokenSecret: TOKEN_SECRET });
    try {
      const again = await entries(fresh.url);
      expect(again.leaves).toEqual(after.leaves.slice(0, again.leaves.length));
      if (again.head.treeSize === after.head.treeSize) expect(hex(again.head.rootHash)).toBe(hex(after.head.rootHash));
    } finally {
      await fresh.close();
    }
  }, 180_000);
});
