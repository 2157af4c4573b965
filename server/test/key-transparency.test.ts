/**
 * The key transparency log through the real RPCs on two server instances sharing one
 * nats-server: every device-list version is a leaf; both instances serve the same tree;
 * GetDeviceList's inclusion proof, the signed tree heads, consistency proofs and the log's
 * entries all check with the client's RFC 9162 verifiers (independent code); bad requests get
 * precise codes.
 */
import { describe, expect, it } from "vitest";
import { Code, createClient } from "@connectrpc/connect";
import { createNodeProvider } from "@sealpost/client/crypto";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { SignedTreeHead } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import { createTestAccount, plainTransport, startTestServer } from "@sealpost/test-support";
import { leafHash, rootOf, verifyConsistency, verifyInclusion } from "../../clients/ts/src/directory/merkle-proofs.js";
import { TransparencyLog, accountIndex, encodeLeaf, listHash, treeHeadSignedBytes } from "../src/transparency/transparency-log.js";
import { expectConnectError, useTwoInstances } from "./directory-helpers.js";

const servers = useTwoInstances();
const p = createNodeProvider();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function signedBy(logKey: Uint8Array, h: SignedTreeHead): Promise<boolean> {
  return p.ed25519Verify(logKey, treeHeadSignedBytes(h.treeSize, h.rootHash, h.timestampMs), h.signature);
}

describe("key transparency log", () => {
  it("each device-list version is a leaf, proven to a signed head on either instance", async () => {
    const a = createClient(DirectoryService, plainTransport(servers.a.url));
    const b = createClient(DirectoryService, plainTransport(servers.b.url));
    const { logKey } = await a.getTreeHead({});
    expect(hex((await b.getTreeHead({})).logKey)).toBe(hex(logKey));

    const alice = await createTestAccount(servers.a.url, "kt-alice", { devices: 2, oneTimePrekeys: 1 });
    for (const client of [a, b]) {
      const res = await client.getDeviceList({ accountId: alice.accountId });
      const kt = res.transparency!;
      expect(await signedBy(logKey, kt.treeHead!)).toBe(true);
      const leaf = encodeLeaf({ accountIndex: accountIndex(alice.accountId), version: 2n, listHash: listHash(res.deviceList!.deviceList) });
      expect(verifyInclusion(p, leafHash(p, leaf), Number(kt.leafIndex), Number(kt.treeHead!.treeSize), kt.auditPath, kt.treeHead!.rootHash)).toBe(true);
      // A different version or list does not verify with that path.
      const other = encodeLeaf({ accountIndex: accountIndex(alice.accountId), version: 1n, listHash: listHash(res.deviceList!.deviceList) });
      expect(verifyInclusion(p, leafHash(p, other), Number(kt.leafIndex), Number(kt.treeHead!.treeSize), kt.auditPath, kt.treeHead!.rootHash)).toBe(false);
    }

    // Version 1 (created) and 2 (linked) are both in the log, in that order.
    const head = (await a.getTreeHead({})).treeHead!;
    const { entries } = await b.getLogEntries({ start: 0n, count: 1000 });
    expect(BigInt(entries.length)).toBeGreaterThanOrEqual(head.treeSize);
    const mine = entries.filter((e) => hex(e.accountIndex) === hex(accountIndex(alice.accountId))).map((e) => e.version);
    expect(mine).toEqual([1n, 2n]);
    // The entries are the tree: their root is the signed root.
    const leaves = entries.slice(0, Number(head.treeSize)).map((e) => leafHash(p, encodeLeaf(e)));
    expect(hex(rootOf(p, leaves))).toBe(hex(head.rootHash));
  });

  it("a later head is consistent with an earlier one, whichever instance signed them", async () => {
    const a = createClient(DirectoryService, plainTransport(servers.a.url));
    const b = createClient(DirectoryService, plainTransport(servers.b.url));
    const before = (await a.getTreeHead({})).treeHead!;
    await createTestAccount(servers.b.url, "kt-bob", { oneTimePrekeys: 1 });
    await createTestAccount(servers.a.url, "kt-carol", { oneTimePrekeys: 1 });
    let after = (await b.getTreeHead({})).treeHead!;
    for (let i = 0; i < 100 && after.treeSize < before.treeSize + 2n; i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = (await b.getTreeHead({})).treeHead!;
    }
    expect(after.treeSize).toBe(before.treeSize + 2n);
    const { proof } = await a.getConsistencyProof({ firstSize: before.treeSize, secondSize: after.treeSize });
    expect(verifyConsistency(p, Number(before.treeSize), Number(after.treeSize), before.rootHash, after.rootHash, proof)).toBe(true);
    expect(verifyConsistency(p, Number(before.treeSize), Number(after.treeSize), after.rootHash, after.rootHash, proof)).toBe(false);
  });

  it("bad requests get precise codes", async () => {
    const a = createClient(DirectoryService, plainTransport(servers.a.url));
    const size = (await a.getTreeHead({})).treeHead!.treeSize;
    await expectConnectError(a.getConsistencyProof({ firstSize: 0n, secondSize: size }), Code.InvalidArgument, /first_size must be 1\.\.second_size/);
    await expectConnectError(a.getConsistencyProof({ firstSize: 2n, secondSize: 1n }), Code.InvalidArgument, /first_size must be 1\.\.second_size/);
    await expectConnectError(a.getConsistencyProof({ firstSize: 1n, secondSize: size + 5n }), Code.OutOfRange, /is beyond this server's tree/);
    await expectConnectError(a.getLogEntries({ start: 0n, count: 0 }), Code.InvalidArgument, "count must be 1..1000, got 0");
    await expectConnectError(a.getLogEntries({ start: 0n, count: 1001 }), Code.InvalidArgument, "count must be 1..1000, got 1001");
    await expectConnectError(a.getLogEntries({ start: size + 1n, count: 1 }), Code.OutOfRange, /is beyond the log/);
    expect((await a.getLogEntries({ start: size, count: 10 })).entries).toEqual([]);
  });

  it("an instance behind the stream answers a consistency proof for a size it has not read, by reading it first", async () => {
    const ctx = servers.a.context;
    const lagging = new TransparencyLog(ctx.nats, new Uint8Array(32).fill(5), Date.now, ctx.log);
    await lagging.start();
    // Its consumer stops (as after a NATS restart, before its heartbeat notices).
    await (lagging as unknown as { messages: { close(): Promise<void> } }).messages.close();
    const before = lagging.size;
    await createTestAccount(servers.b.url, "kt-lag", { oneTimePrekeys: 1 });
    const head = (await createClient(DirectoryService, plainTransport(servers.b.url)).getTreeHead({})).treeHead!;
    expect(head.treeSize).toBeGreaterThan(BigInt(before));
    await new Promise((r) => setTimeout(r, 200));
    expect(lagging.size).toBe(before); // it really stopped following
    const proof = await lagging.consistency(BigInt(before), head.treeSize);
    expect(lagging.size).toBe(Number(head.treeSize));
    const { entries } = await createClient(DirectoryService, plainTransport(servers.b.url)).getLogEntries({ start: 0n, count: before });
    const rootBefore = rootOf(
      p,
      entries.map((e) => leafHash(p, encodeLeaf(e))),
    );
    expect(verifyConsistency(p, before, Number(head.treeSize), rootBefore, head.rootHash, proof)).toBe(true);
    await expect(lagging.consistency(1n, head.treeSize + 100n)).rejects.toThrow(/beyond this server's tree/);
    await lagging.close();
  });

  it("the open log reads are limited per caller address: RESOURCE_EXHAUSTED with the time to wait", async () => {
    const limited = await startTestServer(servers.a.context.config.natsUrl!, {}, { directory: { limits: { transparencyReadsPerMinute: 2 } } });
    try {
      const dir = createClient(DirectoryService, plainTransport(limited.url));
      await dir.getTreeHead({});
      await dir.getLogEntries({ start: 0n, count: 1 });
      await expectConnectError(dir.getTreeHead({}), Code.ResourceExhausted, /^key transparency read rate limit exceeded for .+; retry in \d+ s$/);
      // Other instances (and GetDeviceList) are not affected.
      expect((await createClient(DirectoryService, plainTransport(servers.a.url)).getTreeHead({})).treeHead).toBeDefined();
    } finally {
      await limited.close();
    }
  });
});
