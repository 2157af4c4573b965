/**
 * Inline content (docs/PROTOCOL.md, Envelopes): a message to exactly one device carries its
 * padded content inside the entry and sends no shared body, when the entry stays within
 * max_entry_bytes with room to seal it for SendSealed; larger content (or a header carrying a KEM key and ciphertext, or a
 * PrekeyMessage, leaving less room) goes in a shared body as for a fan-out. Receivers accept
 * both forms and refuse an inline entry that also names a body key, comes with a body, or is
 * badly padded.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { SenderCertificate_BodySchema, SenderCertificateSchema } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { DeviceEnvelopeSchema, type RatchetMessage } from "@sealpost/gen/sealpost/envelope/v1/device_envelope_pb.js";
import { addressKey } from "../src/protocol/address.js";
import { MAX_ENTRY_BYTES, MAX_INLINE_ENVELOPE_BYTES } from "../src/protocol/limits.js";
import { pad, paddedLength } from "../src/protocol/padding.js";
import { ratchetEncrypt } from "../src/protocol/ratchet.js";
import { newSealingKey, sealEntry } from "../src/protocol/sealed-entry.js";
import type { SessionState } from "../src/protocol/ratchet-state.js";
import { SessionCipher } from "../src/protocol/session-cipher.js";
import { encodeDeviceEnvelope, encodeEntryPayload, type EntryFields } from "../src/protocol/wire.js";
import { PROVIDERS, bodyText, introduce, makeDevice, text, type TestDevice } from "./helpers.js";

const NOW = 1_700_000_000_000;
/** A KEM key per side after every message: headers often carry a KEM key and a ciphertext. */
const FAST_PQ = { messages: 1, ms: 1000 };

function ratchetOf(entry: Uint8Array): RatchetMessage {
  const env = fromBinary(DeviceEnvelopeSchema, entry);
  if (env.kind.case === "ratchet") return env.kind.value;
  if (env.kind.case === "prekey" && env.kind.value.message) return env.kind.value.message;
  throw new Error("not an envelope");
}

/** A sender certificate as large as one can be: a 64-character account id, every number at its widest. */
const LARGEST_CERTIFICATE = create(SenderCertificateSchema, {
  body: toBinary(
    SenderCertificate_BodySchema,
    create(SenderCertificate_BodySchema, {
      accountId: "a".repeat(64),
      deviceId: 0xffffffff,
      identityKey: new Uint8Array(32).fill(1),
      expiresAtMs: 2n ** 64n - 1n,
      keyId: 0xffffffff,
    }),
  ),
  signature: new Uint8Array(64).fill(2),
});

/** Bytes of a length-delimited field holding `n` bytes. */
const fieldBytes = (n: number) => 1 + (n < 128 ? 1 : n < 16384 ? 2 : 3) + n;

describe.each(PROVIDERS)("inline content (%s)", (_name, makeProvider) => {
  it("one entry carries the content inline and no shared body; several entries share one body", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob1 = await makeDevice(p, "bob", 1);
    const bob2 = await makeDevice(p, "bob", 2);
    await introduce(alice, bob1, bob2);
    const one = await alice.cipher.encryptForDevices(text("to bob's first device"), [{ address: bob1.address, bundle: await bob1.bundle() }]);
    expect(one.sharedBody).toHaveLength(0);
    const d1 = await bob1.cipher.decrypt(one.entries[0].entry, one.sharedBody, alice.address);
    expect(bodyText(d1.content)).toBe("to bob's first device");
    expect(d1.payload.content.length).toBe(paddedLength(toBinary(ContentSchema, d1.content!).length));
    expect(d1.payload.contentKey).toHaveLength(0);
    expect(d1.payload.bodySha256).toHaveLength(0);

    const both = await alice.cipher.encryptForDevices(text("to both"), [{ address: bob1.address }, { address: bob2.address, bundle: await bob2.bundle() }]);
    expect(both.sharedBody.length).toBeGreaterThan(0);
    for (const [i, d] of [bob1, bob2].entries()) {
      const r = await d.cipher.decrypt(both.entries[i].entry, both.sharedBody, alice.address);
      expect(bodyText(r.content)).toBe("to both");
      expect(r.payload.content).toHaveLength(0);
      expect(r.payload.contentKey).toHaveLength(32);
    }
  });

  it("an entry never exceeds max_entry_bytes, sealed or not: content goes in a body exactly when inline would leave no room to seal it", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    await introduce(alice, bob);
    for (const d of [alice, bob]) d.cipher = new SessionCipher(p, d.stores, d.address, { now: () => NOW, pqSchedule: FAST_PQ });
    const seen = { inline: 0, body: 0, inlineWithKem: 0, bodyForKem: 0 };
    let bundle = await bob.bundle();
    for (const size of [10, 1500, 2500, 3000, 3500, 3800, 3900, 4000, 5000]) {
      for (let turn = 0; turn < 6; turn++) {
        const [from, to] = turn % 2 === 0 ? [alice, bob] : [bob, alice];
        const words = `${size}/${turn} `.padEnd(size, "x");
        const m = await from.cipher.encryptForDevices(text(words), [{ address: to.address, bundle: from === alice ? bundle : undefined }]);
        const entry = m.entries[0].entry;
        expect(entry.length).toBeLessThanOrEqual(MAX_ENTRY_BYTES);
        // Sealed for SendSealed with the largest certificate there can be, it still fits.
        expect((await sealEntry(p, await newSealingKey(p), to.identity.dhKey, LARGEST_CERTIFICATE, entry)).length).toBeLessThanOrEqual(MAX_ENTRY_BYTES);
        const r = ratchetOf(entry);
        const kem = r.kemPublicKey.length > 0 && r.kemCiphertext.length > 0;
        const got = await to.cipher.decrypt(entry, m.sharedBody, from.address);
        expect(bodyText(got.content)).toBe(words);
        if (m.sharedBody.length === 0) {
          expect(entry.length).toBeLessThanOrEqual(MAX_INLINE_ENVELOPE_BYTES);
          seen.inline++;
          if (kem) seen.inlineWithKem++;
        } else {
          seen.body++;
          if (kem) seen.bodyForKem++;
          // The same entry with the content instead of a content key and a body hash would not
          // have left room to seal it.
          const padded = paddedLength(toBinary(ContentSchema, got.content!).length);
          expect(entry.length - 2 * fieldBytes(32) + fieldBytes(padded)).toBeGreaterThan(MAX_INLINE_ENVELOPE_BYTES);
        }
      }
      bundle = await bob.bundle();
    }
    // Both forms happened, and headers with KEM fields took each of them depending on the size.
    expect(seen.inline).toBeGreaterThan(0);
    expect(seen.body).toBeGreaterThan(0);
    expect(seen.inlineWithKem).toBeGreaterThan(0);
    expect(seen.bodyForKem).toBeGreaterThan(0);
  });

  describe("a receiver refuses a malformed inline entry and still takes the genuine messages after it", () => {
    /** alice's next message to bob with a payload of our making, encrypted on alice's session. */
    async function forged(alice: TestDevice, bob: TestDevice, fields: Partial<EntryFields>): Promise<Uint8Array> {
      const record = (await alice.stores.sessions.load(addressKey(bob.address)))!;
      const state = record.current as SessionState;
      const payload: EntryFields = {
        sender: alice.address,
        recipient: bob.address,
        channelSequence: 99,
        contentKey: new Uint8Array(0),
        bodySha256: new Uint8Array(0),
        messageId: new Uint8Array(16).fill(7),
        ...fields,
      };
      const { header: h, ciphertext } = await ratchetEncrypt(alice.provider, state, encodeEntryPayload(payload), { nowMs: NOW });
      await alice.stores.sessions.save(addressKey(bob.address), record);
      return encodeDeviceEnvelope({ version: state.version, ratchetKey: h.ratchetKey, previousChainLength: h.previousCounter, counter: h.counter, ciphertext });
    }
    const content = (messageId: Uint8Array) => pad(toBinary(ContentSchema, { ...text("forged"), messageId }));

    it.each([
      ["a content key beside the content", { contentKey: new Uint8Array(32).fill(1) }, "invalid_message"],
      ["a body hash beside the content", { bodySha256: new Uint8Array(32).fill(1) }, "invalid_message"],
      ["content without its padding marker", { content: new Uint8Array(256) }, "invalid_message"],
      ["content whose message_id is another message's", { content: content(new Uint8Array(16).fill(8)) }, "body_mismatch"],
      ["well-formed inline content (the control)", {}, undefined],
    ] as const)("%s", async (_what, fields, code) => {
      const p = makeProvider();
      const alice = await makeDevice(p, "alice", 1);
      const bob = await makeDevice(p, "bob", 1);
      await introduce(alice, bob);
      const first = await alice.cipher.encryptForDevices(text("hello"), [{ address: bob.address, bundle: await bob.bundle() }]);
      await bob.cipher.decrypt(first.entries[0].entry, first.sharedBody, alice.address);
      const reply = await bob.cipher.encryptForDevices(text("hi"), [{ address: alice.address }]);
      await alice.cipher.decrypt(reply.entries[0].entry, reply.sharedBody, bob.address);

      const entry = await forged(alice, bob, { content: content(new Uint8Array(16).fill(7)), ...fields });
      const result = await bob.cipher.decrypt(entry, new Uint8Array(0), alice.address).then(
        (d) => bodyText(d.content),
        (e: { code?: string }) => e.code,
      );
      expect(result).toBe(code ?? "forged");
      const after = await alice.cipher.encryptForDevices(text("genuine"), [{ address: bob.address }]);
      expect(bodyText((await bob.cipher.decrypt(after.entries[0].entry, after.sharedBody, alice.address)).content)).toBe("genuine");
    });
  });
});
