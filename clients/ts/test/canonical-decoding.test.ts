/**
 * The canonical decoders agree with protobuf-es: on every encoding our encoders write they
 * yield what `fromBinary` yields, and on mutated bytes they accept only what the rule they
 * replaced accepted (a DeviceEnvelope: parses and re-encodes to the same bytes; the others:
 * anything they accept decodes the same with protobuf-es). Entries whose payload another
 * implementation encoded differently still decrypt, through protobuf-es.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DeviceEnvelopeSchema, EntryPayloadSchema } from "@sealpost/gen/sealpost/envelope/v1/device_envelope_pb.js";
import { SharedBodySchema } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { addressKey } from "../src/protocol/address.js";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import {
  decodeCanonicalDeviceEnvelope,
  decodeCanonicalEntryPayload,
  decodeCanonicalSealedBody,
  decodeCanonicalTextContent,
} from "../src/protocol/canonical-decoding.js";
import { ratchetEncrypt } from "../src/protocol/ratchet.js";
import type { SessionState } from "../src/protocol/ratchet-state.js";
import { encodeDeviceEnvelope, encodeEntryPayload, encodeSealedSharedBody, encodeTextContent } from "../src/protocol/wire.js";
import { sealpostPair, sealpostRoundTrip, sealpostSend } from "../../../bench/src/sealpost-workload.js";

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (max: number) => fc.uint8Array({ maxLength: max });
const account = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/);

const ratchetArb = fc.record({
  version: u32,
  ratchetKey: bytes(40),
  previousChainLength: u32,
  counter: u32,
  ciphertext: bytes(300),
  kemPublicKey: bytes(40),
  kemPublicKeyId: u32,
  kemCiphertext: bytes(40),
  kemCiphertextKeyId: u32,
});
const prekeyArb = fc.option(
  fc.record({
    version: u32,
    identityDhKey: bytes(40),
    baseKey: bytes(40),
    signedPrekeyId: u32,
    oneTimePrekeyId: fc.option(u32, { nil: undefined }),
    kemPrekeyId: u32,
    kemCiphertext: bytes(100),
  }),
  { nil: undefined },
);
const envelopeArb = fc.tuple(ratchetArb, prekeyArb).map(([r, p]) => encodeDeviceEnvelope(r, p));

const payloadArb = fc
  .record({
    sender: fc.record({ accountId: account, deviceId: u32 }),
    recipient: fc.record({ accountId: account, deviceId: u32 }),
    channelSequence: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    contentKey: bytes(40),
    bodySha256: bytes(40),
    messageId: bytes(20),
    content: fc.option(bytes(300), { nil: undefined }),
  })
  .map(encodeEntryPayload);

/** Byte-level damage: a flipped, inserted or deleted byte, a truncation, or appended bytes. */
const mutated = (source: fc.Arbitrary<Uint8Array>) =>
  fc.tuple(source, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 4 }), bytes(4)).map(([b, at, value, kind, extra]) => {
    const i = b.length === 0 ? 0 : at % b.length;
    const out = Array.from(b);
    if (kind === 0 && out.length > 0) out[i] = value;
    else if (kind === 1) out.splice(i, 0, value);
    else if (kind === 2) out.splice(i, 1);
    else if (kind === 3) out.length = i;
    else out.push(...extra);
    return new Uint8Array(out);
  });

function parses<T>(decode: () => T): T | undefined {
  try {
    return decode();
  } catch {
    return undefined;
  }
}

/** The rule the envelope decoder replaced: protobuf-es parses it and our encoder writes the same bytes back. */
function canonicalByReencoding(entry: Uint8Array): boolean {
  const envelope = parses(() => fromBinary(DeviceEnvelopeSchema, entry));
  if (!envelope) return false;
  let again: Uint8Array | undefined;
  if (envelope.kind.case === "ratchet") again = encodeDeviceEnvelope(envelope.kind.value);
  else if (envelope.kind.case === "prekey" && envelope.kind.value.message) again = encodeDeviceEnvelope(envelope.kind.value.message, envelope.kind.value);
  return again !== undefined && Buffer.compare(again, entry) === 0;
}

/** What protobuf-es reads, in the decoder's shape. */
function expectedEnvelope(entry: Uint8Array) {
  const e = fromBinary(DeviceEnvelopeSchema, entry);
  const fields = ({ $typeName: _, ...rest }: Record<string, unknown>) => rest;
  if (e.kind.case === "ratchet") return { case: "ratchet", value: fields(e.kind.value) };
  if (e.kind.case !== "prekey" || !e.kind.value.message) return undefined;
  return { case: "prekey", value: { ...fields(e.kind.value), message: fields(e.kind.value.message) } };
}

describe("canonical decoders", () => {
  it("read every DeviceEnvelope our encoder writes as protobuf-es does", () => {
    fc.assert(
      fc.property(envelopeArb, (entry) => {
        expect(decodeCanonicalDeviceEnvelope(entry)).toEqual(expectedEnvelope(entry));
      }),
      { numRuns: 300 },
    );
  });

  it("accept a damaged DeviceEnvelope exactly when it still parses and re-encodes to itself", () => {
    let accepted = 0;
    fc.assert(
      fc.property(mutated(envelopeArb), (entry) => {
        const decoded = decodeCanonicalDeviceEnvelope(entry);
        expect(decoded !== undefined).toBe(canonicalByReencoding(entry));
        if (decoded) {
          accepted++;
          expect(decoded).toEqual(expectedEnvelope(entry));
        }
      }),
      { numRuns: 2000 },
    );
    // Some damage keeps an envelope canonical (a changed byte inside a key): both sides were exercised.
    expect(accepted).toBeGreaterThan(100);
  });

  it("refuse envelopes protobuf accepts in other encodings", () => {
    const entry = encodeDeviceEnvelope({
      version: 1,
      ratchetKey: new Uint8Array(32).fill(7),
      previousChainLength: 0,
      counter: 3,
      ciphertext: new Uint8Array(40),
    });
    expect(decodeCanonicalDeviceEnvelope(entry)?.case).toBe("ratchet");
    // entry: 0x12 len | 0x08 0x01 (version) | 0x12 0x20 + 32 bytes (ratchet key) | 0x20 0x03 (counter) | 0x2a 0x28 + 40 bytes
    const COUNTER = 2 + 2 + 34;
    expect([entry[COUNTER], entry[COUNTER + 1]]).toEqual([0x20, 0x03]);
    const variants = {
      "a longer varint": splice(entry, COUNTER + 1, 1, [0x83, 0x00]),
      "an explicit zero": splice(entry, COUNTER, 0, [0x18, 0x00]), // previous_chain_length = 0 written out
      "fields out of order": splice(splice(entry, 2, 2, []), entry.length - 2, 0, [0x08, 0x01]), // version moved last
      "an unknown field": splice(entry, entry.length, 0, [0x50, 0x01]), // field 10
      "both kinds": new Uint8Array([...entry, 0x0a, 0x00]),
      "no kind": new Uint8Array(0),
    };
    for (const [name, bytes] of Object.entries(variants)) {
      expect(
        parses(() => fromBinary(DeviceEnvelopeSchema, bytes)),
        name,
      ).toBeDefined();
      expect(decodeCanonicalDeviceEnvelope(bytes), name).toBeUndefined();
    }
  });

  it("read EntryPayloads and sealed SharedBodies as protobuf-es does, and only those", () => {
    fc.assert(
      fc.property(payloadArb, (bytes) => {
        expect(decodeCanonicalEntryPayload(bytes)).toEqual(fromBinary(EntryPayloadSchema, bytes));
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(mutated(payloadArb), (bytes) => {
        const decoded = decodeCanonicalEntryPayload(bytes);
        if (decoded) expect(decoded).toEqual(fromBinary(EntryPayloadSchema, bytes));
      }),
      { numRuns: 2000 },
    );
    const sealedArb = fc.tuple(u32, bytes(300)).map(([v, ct]) => encodeSealedSharedBody(v, ct));
    fc.assert(
      fc.property(fc.oneof(sealedArb, mutated(sealedArb)), (bytes) => {
        const decoded = decodeCanonicalSealedBody(bytes);
        if (decoded) {
          const body = fromBinary(SharedBodySchema, bytes);
          expect(body.kind.case).toBe("sealed");
          expect(decoded).toEqual(body.kind.value);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("read text Contents as protobuf-es does (every shape our encoder writes), and nothing it would read otherwise", () => {
    const text = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom("", "\uFEFFbom first", "é中文🙂", "x".repeat(3000)));
    const contentArb = fc
      .record({
        messageId: bytes(20),
        sentAtMs: fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 2n ** 53n }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
        conversation: fc.option(
          fc.oneof(
            fc.record({ case: fc.constant("accountId" as const), value: fc.oneof(account, fc.string({ maxLength: 8 })) }),
            fc.record({ case: fc.constant("groupId" as const), value: bytes(16) }),
            fc.constant({ case: undefined }),
          ),
          { nil: undefined },
        ),
        body: text,
        quote: bytes(16),
        senderAccessKey: bytes(16),
        withLogHead: fc.boolean(),
      })
      .map(({ conversation, body, quote, withLogHead, ...rest }) =>
        create(ContentSchema, {
          ...rest,
          conversation: conversation && { kind: conversation },
          body: { case: "text", value: { body, quoteMessageId: quote } },
          logHead: withLogHead ? { treeSize: 3n } : undefined,
        }),
      );
    const encoded = contentArb.map((c) => toBinary(ContentSchema, c));
    let decoded = 0;
    fc.assert(
      fc.property(fc.oneof(encoded, mutated(encoded)), (bytes) => {
        const quick = decodeCanonicalTextContent(bytes);
        const reference = parses(() => fromBinary(ContentSchema, bytes));
        if (!quick) return;
        decoded++;
        expect(quick).toEqual(reference);
      }),
      { numRuns: 2000 },
    );
    expect(decoded).toBeGreaterThan(200);
    // Every Content our encoder writes for a text (no log head) takes the quick path.
    fc.assert(
      fc.property(contentArb, fc.uint8Array({ minLength: 16, maxLength: 16 }), (content, id) => {
        if (content.logHead || content.sentAtMs < 0n) return;
        const b = encodeTextContent(content, id);
        if (!b) return;
        expect(decodeCanonicalTextContent(b)).toEqual(fromBinary(ContentSchema, b));
      }),
      { numRuns: 300 },
    );
    // Another kind of body, or invalid UTF-8 in the text, is left to protobuf-es (which refuses the latter).
    expect(decodeCanonicalTextContent(toBinary(ContentSchema, create(ContentSchema, { body: { case: "typing", value: {} } })))).toBeUndefined();
    const bad = Uint8Array.of(0x22, 0x03, 0x0a, 0x01, 0xff);
    expect(decodeCanonicalTextContent(bad)).toBeUndefined();
    expect(() => fromBinary(ContentSchema, bad)).toThrow();
  });

  it("an entry whose payload another encoder wrote in another field order still decrypts (through protobuf-es)", async () => {
    const provider = createNodeProvider();
    const [a, b] = await sealpostPair(provider);
    await a.cipher.processBundle(b.address, await b.bundle());
    await sealpostRoundTrip(a, b);
    await sealpostRoundTrip(b, a);
    // A genuine message's payload (read without committing), its fields written last to first.
    const m = await sealpostSend(a, [b]);
    const pending = await b.cipher.beginDecrypt(m.entries[0].entry, m.sharedBody, a.address);
    const reversed = reverseFields(toBinary(EntryPayloadSchema, pending.payload));
    pending.discard();
    expect(decodeCanonicalEntryPayload(reversed)).toBeUndefined();
    expect(fromBinary(EntryPayloadSchema, reversed)).toEqual(pending.payload);

    // The same payload sealed on a's session by hand, as another implementation would.
    const key = addressKey(b.address);
    const record = (await a.stores.sessions.load(key))!;
    const state = record.current as SessionState;
    const { header, ciphertext } = await ratchetEncrypt(provider, state, reversed);
    await a.stores.sessions.save(key, record);
    const entry = encodeDeviceEnvelope({
      version: state.version,
      ratchetKey: header.ratchetKey,
      previousChainLength: header.previousCounter,
      counter: header.counter,
      ciphertext,
    });
    const decrypted = await b.cipher.decrypt(entry, m.sharedBody, a.address);
    expect(decrypted.content?.body.case).toBe("text");
    expect(decrypted.messageId).toEqual(m.messageId);
  });
});

/** `entry` (a ratchet DeviceEnvelope) with `count` bytes at `at` replaced by `bytes`, its length fixed up. */
function splice(entry: Uint8Array, at: number, count: number, bytes: number[]): Uint8Array {
  const out = Array.from(entry);
  out.splice(at, count, ...bytes);
  out[1] += bytes.length - count;
  return new Uint8Array(out);
}

/** The top-level fields of a message in reverse order (still valid protobuf, not canonical). */
function reverseFields(bytes: Uint8Array): Uint8Array {
  const fields: Uint8Array[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const start = pos;
    const tag = bytes[pos++];
    if ((tag & 7) === 0) while (bytes[pos++] & 0x80);
    else {
      let len = 0;
      let shift = 0;
      for (;;) {
        const b = bytes[pos++];
        len |= (b & 0x7f) << shift;
        shift += 7;
        if (b < 0x80) break;
      }
      pos += len;
    }
    fields.push(bytes.subarray(start, pos));
  }
  return new Uint8Array(fields.reverse().flatMap((f) => Array.from(f)));
}
