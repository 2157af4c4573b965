import { describe, expect, it } from "vitest";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFileStores } from "../src/store/file-store.js";
import { PROVIDERS, bodyText, introduce, makeDevice, text } from "./helpers.js";

describe.each(PROVIDERS)("SessionCipher (%s)", (_name, makeProvider) => {
  it("sets up a session and exchanges messages both ways", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    await introduce(alice, bob);
    const m1 = await alice.cipher.encryptForDevices(text("hello bob"), [{ address: bob.address, bundle: await bob.bundle() }]);
    expect(m1.entries).toHaveLength(1);
    const d1 = await bob.cipher.decrypt(m1.entries[0].entry, m1.sharedBody, alice.address);
    expect(bodyText(d1.content)).toBe("hello bob");
    expect(d1.newSession).toBe(true);
    expect(d1.channel.status).toBe("in_order");
    expect(await bob.stores.oneTimePrekeys.load(1)).toBeUndefined();
    const m2 = await bob.cipher.encryptForDevices(text("hi alice"), [{ address: alice.address }]);
    const d2 = await alice.cipher.decrypt(m2.entries[0].entry, m2.sharedBody, bob.address);
    expect(bodyText(d2.content)).toBe("hi alice");
    const m3 = await alice.cipher.encryptForDevices(text("third"), [{ address: bob.address }]);
    const d3 = await bob.cipher.decrypt(m3.entries[0].entry, m3.sharedBody, alice.address);
    expect(bodyText(d3.content)).toBe("third");
    expect(d3.newSession).toBe(false);
    expect(d3.channel.sequence).toBe(2);
  });
});

describe.each(PROVIDERS)("SessionCipher behaviour (%s)", (_name, makeProvider) => {
  it("fans one body out to several devices, including the sender's own", async () => {
    const p = makeProvider();
    const alice1 = await makeDevice(p, "alice", 1);
    const alice2 = await makeDevice(p, "alice", 2);
    const bobs = [await makeDevice(p, "bob", 1), await makeDevice(p, "bob", 2), await makeDevice(p, "bob", 3)];
    await introduce(alice1, alice2, ...bobs);
    const targets = [...bobs, alice2];
    const m = await alice1.cipher.encryptForDevices(
      text("to everyone"),
      await Promise.all(targets.map(async (d) => ({ address: d.address, bundle: await d.bundle() }))),
    );
    expect(m.entries.map((e) => `${e.address.accountId}.${e.address.deviceId}`)).toEqual(["bob.1", "bob.2", "bob.3", "alice.2"]);
    expect(new Set(m.entries.map((e) => Buffer.from(e.entry).toString("hex"))).size).toBe(4);
    for (const [i, d] of targets.entries()) {
      const r = await d.cipher.decrypt(m.entries[i].entry, m.sharedBody, alice1.address);
      expect(bodyText(r.content)).toBe("to everyone");
      expect(Buffer.from(r.messageId).equals(Buffer.from(m.messageId))).toBe(true);
    }
  });

  it("refuses to encrypt when a device has neither session nor bundle, before changing anything", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob1 = await makeDevice(p, "bob", 1);
    const bob2 = await makeDevice(p, "bob", 2);
    await introduce(alice, bob1, bob2);
    const err = await alice.cipher
      .encryptForDevices(text("x"), [{ address: bob1.address, bundle: await bob1.bundle() }, { address: bob2.address }])
      .catch((e) => e);
    expect(err.code).toBe("no_session");
    expect(err.message).toContain("bob.2");
    expect(await alice.cipher.hasSession(bob1.address)).toBe(false);
    expect(await alice.stores.channels.loadSent("bob.1")).toBe(0);
  });

  it("reports channel gaps, late arrivals and re-sent sequences", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    await introduce(alice, bob);
    const ms = [];
    ms.push(await alice.cipher.encryptForDevices(text("1"), [{ address: bob.address, bundle: await bob.bundle() }]));
    for (const t of ["2", "3", "4"]) ms.push(await alice.cipher.encryptForDevices(text(t), [{ address: bob.address }]));
    const got = [];
    for (const i of [0, 3, 1, 2]) {
      const d = await bob.cipher.decrypt(ms[i].entries[0].entry, ms[i].sharedBody, alice.address);
      got.push([d.channel.sequence, d.channel.status, d.channel.outstanding]);
    }
    expect(got).toEqual([
      [1, "in_order", 0],
      [4, "gap", 2],
      [2, "late", 1],
      [3, "late", 0],
    ]);
  });

  it("simultaneous initiation converges on one session (smaller base key wins)", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    await introduce(alice, bob);
    const fromA = await alice.cipher.encryptForDevices(text("a first"), [{ address: bob.address, bundle: await bob.bundle() }]);
    const fromB = await bob.cipher.encryptForDevices(text("b first"), [{ address: alice.address, bundle: await alice.bundle() }]);
    expect(bodyText((await bob.cipher.decrypt(fromA.entries[0].entry, fromA.sharedBody, alice.address)).content)).toBe("a first");
    expect(bodyText((await alice.cipher.decrypt(fromB.entries[0].entry, fromB.sharedBody, bob.address)).content)).toBe("b first");
    for (let i = 0; i < 4; i++) {
      const a = await alice.cipher.encryptForDevices(text(`a${i}`), [{ address: bob.address }]);
      const b = await bob.cipher.encryptForDevices(text(`b${i}`), [{ address: alice.address }]);
      expect(bodyText((await bob.cipher.decrypt(a.entries[0].entry, a.sharedBody, alice.address)).content)).toBe(`a${i}`);
      expect(bodyText((await alice.cipher.decrypt(b.entries[0].entry, b.sharedBody, bob.address)).content)).toBe(`b${i}`);
    }
    const ra = (await alice.stores.sessions.load("bob.1"))!;
    const rb = (await bob.stores.sessions.load("alice.1"))!;
    expect(Buffer.from(ra.current!.baseKey).equals(Buffer.from(rb.current!.baseKey))).toBe(true);
    expect(ra.current!.pendingPrekey).toBeUndefined();
  });

  it("a late message for a superseded session still decrypts from the previous states", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    await introduce(alice, bob);
    const first = await alice.cipher.encryptForDevices(text("old session"), [{ address: bob.address, bundle: await bob.bundle() }]);
    const late = await alice.cipher.encryptForDevices(text("old session, late"), [{ address: bob.address }]);
    await bob.cipher.decrypt(first.entries[0].entry, first.sharedBody, alice.address);
    // Alice resets the session (e.g. after a restore) and starts a new one.
    await alice.cipher.processBundle(bob.address, await bob.bundle());
    const fresh = await alice.cipher.encryptForDevices(text("new session"), [{ address: bob.address }]);
    expect((await bob.cipher.decrypt(fresh.entries[0].entry, fresh.sharedBody, alice.address)).newSession).toBe(true);
    expect(bodyText((await bob.cipher.decrypt(late.entries[0].entry, late.sharedBody, alice.address)).content)).toBe("old session, late");
  });

  it("limits: a message more than 2000 ahead in its chain is refused, 2000 is accepted", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    await introduce(alice, bob);
    const first = await alice.cipher.encryptForDevices(text("0"), [{ address: bob.address, bundle: await bob.bundle() }]);
    await bob.cipher.decrypt(first.entries[0].entry, first.sharedBody, alice.address);
    const msgs = [];
    for (let i = 0; i < 2002; i++) msgs.push(await alice.cipher.encryptForDevices(text(`${i + 1}`), [{ address: bob.address }]));
    expect((await bob.cipher.decrypt(msgs[2001].entries[0].entry, msgs[2001].sharedBody, alice.address).catch((e) => e)).code).toBe("too_far_ahead");
    expect(bodyText((await bob.cipher.decrypt(msgs[2000].entries[0].entry, msgs[2000].sharedBody, alice.address)).content)).toBe("2001");
    expect(bodyText((await bob.cipher.decrypt(msgs[5].entries[0].entry, msgs[5].sharedBody, alice.address)).content)).toBe("6");
    const record = (await bob.stores.sessions.load("alice.1"))!;
    expect(record.current!.skipped.length).toBe(1999);
  });
});

describe.each(PROVIDERS)("SessionCipher two-step decryption (%s)", (_name, makeProvider) => {
  /** Bob and Alice introduced; Alice's first (prekey) message to Bob, not yet decrypted. */
  async function firstMessage() {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    await introduce(alice, bob);
    const m1 = await alice.cipher.encryptForDevices(text("first"), [{ address: bob.address, bundle: await bob.bundle() }]);
    return { alice, bob, m1, e1: m1.entries[0].entry };
  }

  it("beginDecrypt of a prekey message changes neither the session nor the one-time prekey until commit", async () => {
    const { alice, bob, m1, e1 } = await firstMessage();
    const abandoned = await bob.cipher.beginDecrypt(e1, m1.sharedBody, alice.address);
    expect(bodyText(abandoned.content)).toBe("first");
    abandoned.discard();
    expect(await bob.stores.oneTimePrekeys.load(1)).toBeDefined();
    expect(await bob.cipher.hasSession(alice.address)).toBe(false);
  });

  it("an abandoned result decrypts again on redelivery; commit is once, and then it is a duplicate", async () => {
    const { alice, bob, m1, e1 } = await firstMessage();
    (await bob.cipher.beginDecrypt(e1, m1.sharedBody, alice.address)).discard();
    // Redelivery after a failure between decrypt and store: decrypts again, then commits.
    const again = await bob.cipher.beginDecrypt(e1, m1.sharedBody, alice.address);
    expect(again.newSession).toBe(true);
    await again.commit();
    await again.commit();
    expect(await bob.stores.oneTimePrekeys.load(1)).toBeUndefined();
    await expect(bob.cipher.beginDecrypt(e1, m1.sharedBody, alice.address)).rejects.toMatchObject({ code: "duplicate_message" });
  });

  it("a ratchet message left uncommitted is redelivered and committed; a discarded result cannot commit", async () => {
    const { alice, bob, m1, e1 } = await firstMessage();
    await (await bob.cipher.beginDecrypt(e1, m1.sharedBody, alice.address)).commit();
    const m2 = await alice.cipher.encryptForDevices(text("second"), [{ address: bob.address }]);
    const p2 = await bob.cipher.beginDecrypt(m2.entries[0].entry, m2.sharedBody, alice.address);
    expect(p2.channel.sequence).toBe(2);
    p2.discard();
    await expect(p2.commit()).rejects.toMatchObject({ code: "invalid_message" });
    const p2b = await bob.cipher.beginDecrypt(m2.entries[0].entry, m2.sharedBody, alice.address);
    expect(bodyText(p2b.content)).toBe("second");
    await p2b.commit();
    await expect(bob.cipher.decrypt(m2.entries[0].entry, m2.sharedBody, alice.address)).rejects.toMatchObject({ code: "duplicate_message" });
  });

  it("a send to the same device between decrypt and commit is linearized before the commit", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    // File stores load copies: a stale plan committed as is would overwrite the send's state.
    const bob = await makeDevice(p, "bob", 1, createFileStores(await mkdtemp(join(tmpdir(), "sealpost-cipher-")), { fsync: false }));
    await introduce(alice, bob);
    const m1 = await alice.cipher.encryptForDevices(text("hello"), [{ address: bob.address, bundle: await bob.bundle() }]);
    await bob.cipher.decrypt(m1.entries[0].entry, m1.sharedBody, alice.address);
    const r1 = await bob.cipher.encryptForDevices(text("reply"), [{ address: alice.address }]);
    await alice.cipher.decrypt(r1.entries[0].entry, r1.sharedBody, bob.address);
    // Alice answers on a new ratchet key (bob decrypts it), then once more on the same chain:
    // bob plans that one, sends (a receipt, say: his sending DH step), then commits.
    const m2 = await alice.cipher.encryptForDevices(text("new chain"), [{ address: bob.address }]);
    await bob.cipher.decrypt(m2.entries[0].entry, m2.sharedBody, alice.address);
    const m3 = await alice.cipher.encryptForDevices(text("same chain"), [{ address: bob.address }]);
    const pending = await bob.cipher.beginDecrypt(m3.entries[0].entry, m3.sharedBody, alice.address);
    const r2 = await bob.cipher.encryptForDevices(text("sent meanwhile"), [{ address: alice.address }]);
    await pending.commit();
    const r3 = await bob.cipher.encryptForDevices(text("after commit"), [{ address: alice.address }]);
    expect(bodyText((await alice.cipher.decrypt(r2.entries[0].entry, r2.sharedBody, bob.address)).content)).toBe("sent meanwhile");
    expect(bodyText((await alice.cipher.decrypt(r3.entries[0].entry, r3.sharedBody, bob.address)).content)).toBe("after commit");
    const m4 = await alice.cipher.encryptForDevices(text("and again"), [{ address: bob.address }]);
    expect(bodyText((await bob.cipher.decrypt(m4.entries[0].entry, m4.sharedBody, alice.address)).content)).toBe("and again");
    await expect(bob.cipher.decrypt(m3.entries[0].entry, m3.sharedBody, alice.address)).rejects.toMatchObject({ code: "duplicate_message" });
  });
});
