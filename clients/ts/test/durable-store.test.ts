/** The file store keeps sessions, prekeys and channel counters across a restart. */
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createFileStores } from "../src/store/file-store.js";
import { decodeRecord, encodeRecord } from "../src/store/json-codec.js";
import { PROVIDERS, bodyText, introduce, makeDevice, text } from "./helpers.js";

const root = mkdtempSync(path.join(tmpdir(), "sealpost-store-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("json codec", () => {
  it("round-trips byte arrays and nested records", () => {
    const v = { a: new Uint8Array([1, 2, 255]), list: [{ k: new Uint8Array(0) }], n: 3, s: "x", missing: undefined };
    const back = decodeRecord<typeof v>(encodeRecord(v));
    expect(back.a).toEqual(new Uint8Array([1, 2, 255]));
    expect(back.list[0].k).toEqual(new Uint8Array(0));
    expect(back.n).toBe(3);
    expect("missing" in back).toBe(false);
  });
});

describe.each(PROVIDERS)("file store (%s)", (name, makeProvider) => {
  it("a restarted client keeps its sessions and channel counters", async () => {
    const p = makeProvider();
    const dirA = path.join(root, name, "alice");
    const dirB = path.join(root, name, "bob");
    const alice = await makeDevice(p, "alice", 1, createFileStores(dirA));
    const bob = await makeDevice(p, "bob", 1, createFileStores(dirB));
    await introduce(alice, bob);
    const m1 = await alice.cipher.encryptForDevices(text("before"), [{ address: bob.address, bundle: await bob.bundle() }]);
    await bob.cipher.decrypt(m1.entries[0].entry, m1.sharedBody, alice.address);
    const pendingForBob = await alice.cipher.encryptForDevices(text("in flight across the restart"), [{ address: bob.address }]);

    alice.restart(createFileStores(dirA));
    bob.restart(createFileStores(dirB));
    const d = await bob.cipher.decrypt(pendingForBob.entries[0].entry, pendingForBob.sharedBody, alice.address);
    expect(bodyText(d.content)).toBe("in flight across the restart");
    expect(d.channel).toMatchObject({ sequence: 2, status: "in_order" });
    const reply = await bob.cipher.encryptForDevices(text("after"), [{ address: alice.address }]);
    expect(bodyText((await alice.cipher.decrypt(reply.entries[0].entry, reply.sharedBody, bob.address)).content)).toBe("after");
    // Replays are still recognised after the restart.
    expect((await bob.cipher.decrypt(m1.entries[0].entry, m1.sharedBody, alice.address).catch((e) => e)).code).toBe("duplicate_message");
    // Private key files are owner-only and no temp files are left behind.
    const sessionDir = path.join(dirB, "sessions");
    expect(readdirSync(sessionDir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(statSync(path.join(dirB, "identity", "local.json")).mode & 0o077).toBe(0);
  });
});
