/**
 * Tampering and forgery: every modified header, ciphertext, body, key or signature fails with
 * a typed SealpostCryptoError, and the session still decrypts the genuine message afterwards.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DeviceEnvelopeSchema } from "@sealpost/gen/sealpost/envelope/v1/device_envelope_pb.js";
import { KeyBundleSchema } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { SealpostCryptoError } from "../src/crypto/errors.js";
import { PROVIDERS, bodyText, introduce, makeDevice, text, type TestDevice } from "./helpers.js";

/** alice with sessions to bob's two devices: a message to one of them carries its content inline, to both a shared body. */
async function established(makeProvider: () => ReturnType<(typeof PROVIDERS)[0][1]>): Promise<[TestDevice, TestDevice, TestDevice]> {
  const p = makeProvider();
  const alice = await makeDevice(p, "alice", 1);
  const bob = await makeDevice(p, "bob", 1);
  const bob2 = await makeDevice(p, "bob", 2);
  await introduce(alice, bob, bob2);
  const m = await alice.cipher.encryptForDevices(text("setup"), [
    { address: bob.address, bundle: await bob.bundle() },
    { address: bob2.address, bundle: await bob2.bundle() },
  ]);
  for (const [i, d] of [bob, bob2].entries()) {
    await d.cipher.decrypt(m.entries[i].entry, m.sharedBody, alice.address);
    const r = await d.cipher.encryptForDevices(text("reply"), [{ address: alice.address }]);
    await alice.cipher.decrypt(r.entries[0].entry, r.sharedBody, d.address);
  }
  return [alice, bob, bob2];
}

function flip(b: Uint8Array, i: number, bit = 1): Uint8Array {
  const c = b.slice();
  c[i % c.length] ^= bit;
  return c;
}

describe.each(PROVIDERS)("tampering (%s)", (_name, makeProvider) => {
  it("any single bit flip in an entry or a body fails cleanly and leaves the session usable", async () => {
    const [alice, bob, bob2] = await established(makeProvider);
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.boolean(), fc.nat(), fc.integer({ min: 0, max: 7 }), async (inline, inEntry, where, bit) => {
        // To bob alone the content rides in the entry (no body to flip); to both, in the shared body.
        const m = await alice.cipher.encryptForDevices(
          text("genuine"),
          inline ? [{ address: bob.address }] : [{ address: bob.address }, { address: bob2.address }],
        );
        expect(m.sharedBody.length === 0).toBe(inline);
        const entry = inEntry || inline ? flip(m.entries[0].entry, where, 1 << bit) : m.entries[0].entry;
        const body = inEntry || inline ? m.sharedBody : flip(m.sharedBody, where, 1 << bit);
        await expect(bob.cipher.decrypt(entry, body, alice.address)).rejects.toBeInstanceOf(SealpostCryptoError);
        const ok = await bob.cipher.decrypt(m.entries[0].entry, m.sharedBody, alice.address);
        expect(bodyText(ok.content)).toBe("genuine");
      }),
      { numRuns: process.env.SEALPOST_LONG ? 300 : 25 },
    );
  });

  it("forged header fields (ratchet key, counter, previous chain length, version, KEM fields) are rejected", async () => {
    const [alice, bob] = await established(makeProvider);
    const m = await alice.cipher.encryptForDevices(text("genuine"), [{ address: bob.address }]);
    const env = fromBinary(DeviceEnvelopeSchema, m.entries[0].entry);
    if (env.kind.case !== "ratchet") throw new Error("expected a ratchet message");
    const variants = [
      { ...env.kind.value, counter: env.kind.value.counter + 1 },
      { ...env.kind.value, counter: 5000 },
      { ...env.kind.value, previousChainLength: 7 },
      { ...env.kind.value, ratchetKey: flip(env.kind.value.ratchetKey, 3) },
      { ...env.kind.value, ratchetKey: new Uint8Array(32) },
      { ...env.kind.value, ratchetKey: new Uint8Array(31) },
      { ...env.kind.value, version: 3 },
      // A downgrade to a classical message, an injected ratchet KEM key, a malformed ciphertext.
      { ...env.kind.value, version: 1 },
      { ...env.kind.value, kemPublicKey: new Uint8Array(1184).fill(7), kemPublicKeyId: 9 },
      { ...env.kind.value, kemCiphertext: new Uint8Array(10), kemCiphertextKeyId: 1 },
    ];
    const codes = [];
    for (const v of variants) {
      const forged = toBinary(DeviceEnvelopeSchema, create(DeviceEnvelopeSchema, { kind: { case: "ratchet", value: v } }));
      const err = await bob.cipher.decrypt(forged, m.sharedBody, alice.address).catch((e) => e);
      expect(err).toBeInstanceOf(SealpostCryptoError);
      codes.push(err.code);
    }
    expect(codes).toEqual([
      "decryption_failed",
      "too_far_ahead",
      "decryption_failed",
      "decryption_failed",
      "decryption_failed",
      "invalid_message",
      "unsupported_version",
      "decryption_failed",
      "decryption_failed",
      "invalid_message",
    ]);
    expect(bodyText((await bob.cipher.decrypt(m.entries[0].entry, m.sharedBody, alice.address)).content)).toBe("genuine");
  });

  it("a body swapped for another message's body, added to an inline entry or left out, or a lying transport sender, is rejected", async () => {
    const [alice, bob, bob2] = await established(makeProvider);
    const both = [{ address: bob.address }, { address: bob2.address }];
    const m1 = await alice.cipher.encryptForDevices(text("one"), both);
    const m2 = await alice.cipher.encryptForDevices(text("two"), both);
    const m3 = await alice.cipher.encryptForDevices(text("three"), [{ address: bob.address }]);
    const code = (entry: Uint8Array, body: Uint8Array, sender = alice.address) => bob.cipher.decrypt(entry, body, sender).catch((e) => e.code);
    expect(await code(m1.entries[0].entry, m2.sharedBody)).toBe("body_mismatch");
    expect(await code(m1.entries[0].entry, new Uint8Array(0))).toBe("body_mismatch");
    expect(await code(m3.entries[0].entry, m2.sharedBody)).toBe("body_mismatch");
    expect(await code(m1.entries[0].entry, m1.sharedBody, { accountId: "alice", deviceId: 2 })).toBe("no_session");
    expect(bodyText((await bob.cipher.decrypt(m1.entries[0].entry, m1.sharedBody, alice.address)).content)).toBe("one");
    expect(bodyText((await bob.cipher.decrypt(m2.entries[0].entry, m2.sharedBody, alice.address)).content)).toBe("two");
    expect(bodyText((await bob.cipher.decrypt(m3.entries[0].entry, m3.sharedBody, alice.address)).content)).toBe("three");
  });

  it("an entry for another device is rejected with address_mismatch", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob1 = await makeDevice(p, "bob", 1);
    const bob2 = await makeDevice(p, "bob", 2);
    await introduce(alice, bob1, bob2);
    const m = await alice.cipher.encryptForDevices(text("x"), [
      { address: bob1.address, bundle: await bob1.bundle() },
      { address: bob2.address, bundle: await bob2.bundle() },
    ]);
    // bob2 cannot even open bob1's entry (different session); a replay to the right device works.
    await expect(bob2.cipher.decrypt(m.entries[0].entry, m.sharedBody, alice.address)).rejects.toBeInstanceOf(SealpostCryptoError);
    expect(bodyText((await bob2.cipher.decrypt(m.entries[1].entry, m.sharedBody, alice.address)).content)).toBe("x");
  });

  it("bundles with a bad signature or a swapped key are rejected before any state changes", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    const good = await bob.bundle();
    const mutate = (f: (b: ReturnType<typeof structuredClone<typeof good>>) => void) => {
      const b = create(KeyBundleSchema, fromBinary(KeyBundleSchema, toBinary(KeyBundleSchema, good)));
      f(b);
      return b;
    };
    const bad = [
      mutate((b) => (b.signedPrekey!.signature = flip(b.signedPrekey!.signature, 5))),
      mutate((b) => (b.signedPrekey!.publicKey = flip(b.signedPrekey!.publicKey, 0))),
      mutate((b) => (b.signedPrekey!.keyId = 2)),
      mutate((b) => (b.kemPrekey!.signature = flip(b.kemPrekey!.signature, 9))),
      mutate((b) => (b.kemPrekey!.publicKey = flip(b.kemPrekey!.publicKey, 100))),
      mutate((b) => (b.identity!.dhKeySignature = flip(b.identity!.dhKeySignature, 1))),
      mutate((b) => (b.identity!.dhKey = flip(b.identity!.dhKey, 2))),
    ];
    for (const b of bad) {
      const err = await alice.cipher.processBundle(bob.address, b).catch((e) => e);
      expect(err.code).toBe("invalid_signature");
      await expect(alice.cipher.encryptForDevices(text("x"), [{ address: bob.address, bundle: b }])).rejects.toMatchObject({ code: "invalid_signature" });
    }
    expect(await alice.cipher.hasSession(bob.address)).toBe(false);
    await introduce(alice, bob);
    const m = await alice.cipher.encryptForDevices(text("ok"), [{ address: bob.address, bundle: good }]);
    expect(bodyText((await bob.cipher.decrypt(m.entries[0].entry, m.sharedBody, alice.address)).content)).toBe("ok");
  });

  it("prekey messages: unknown or changed sender identity, tampered KEM ciphertext, and replays", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    const mallory = await makeDevice(p, "alice", 1);
    await alice.stores.identity.saveRemoteIdentity("bob.1", { signingKey: bob.identity.signingKey, dhKey: bob.identity.dhKey });
    const m = await alice.cipher.encryptForDevices(text("hi"), [{ address: bob.address, bundle: await bob.bundle() }]);
    expect((await bob.cipher.decrypt(m.entries[0].entry, m.sharedBody, alice.address).catch((e) => e)).code).toBe("untrusted_identity");
    await bob.stores.identity.saveRemoteIdentity("alice.1", { signingKey: mallory.identity.signingKey, dhKey: mallory.identity.dhKey });
    expect((await bob.cipher.decrypt(m.entries[0].entry, m.sharedBody, alice.address).catch((e) => e)).code).toBe("untrusted_identity");
    await bob.stores.identity.saveRemoteIdentity("alice.1", { signingKey: alice.identity.signingKey, dhKey: alice.identity.dhKey });

    const env = fromBinary(DeviceEnvelopeSchema, m.entries[0].entry);
    if (env.kind.case !== "prekey") throw new Error("expected a prekey message");
    const forged = toBinary(
      DeviceEnvelopeSchema,
      create(DeviceEnvelopeSchema, { kind: { case: "prekey", value: { ...env.kind.value, kemCiphertext: flip(env.kind.value.kemCiphertext, 77) } } }),
    );
    expect((await bob.cipher.decrypt(forged, m.sharedBody, alice.address).catch((e) => e)).code).toBe("decryption_failed");
    const wrongSpk = toBinary(
      DeviceEnvelopeSchema,
      create(DeviceEnvelopeSchema, { kind: { case: "prekey", value: { ...env.kind.value, signedPrekeyId: 99 } } }),
    );
    expect((await bob.cipher.decrypt(wrongSpk, m.sharedBody, alice.address).catch((e) => e)).code).toBe("missing_prekey");
    expect(await bob.stores.oneTimePrekeys.load(1)).toBeDefined();

    const d = await bob.cipher.decrypt(m.entries[0].entry, m.sharedBody, alice.address);
    expect(bodyText(d.content)).toBe("hi");
    expect(await bob.stores.oneTimePrekeys.load(1)).toBeUndefined();
    // The very same prekey message again: found by its base key, rejected as a duplicate.
    expect((await bob.cipher.decrypt(m.entries[0].entry, m.sharedBody, alice.address).catch((e) => e)).code).toBe("duplicate_message");
  });
});
