/** Hand-written encoders equal protobuf-es; padding; safety numbers. */
import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DeviceEnvelopeSchema, EntryPayloadSchema } from "@sealpost/gen/sealpost/envelope/v1/device_envelope_pb.js";
import { SharedBodySchema } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { toHex } from "../src/crypto/bytes.js";
import { pad, paddedLength, unpad } from "../src/protocol/padding.js";
import { accountFingerprint, safetyNumber } from "../src/protocol/safety-number.js";
import {
  TEXT_CONTENT_SCHEMA_KNOWN,
  deviceEnvelopeSize,
  encodeDeviceEnvelope,
  encodeEntryPayload,
  encodeSealedSharedBody,
  encodeTextContent,
  entryPayloadSize,
} from "../src/protocol/wire.js";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { PROVIDERS } from "./helpers.js";

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (max: number) => fc.uint8Array({ maxLength: max });
const account = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/);

describe("wire encoders match protobuf-es toBinary", () => {
  it("text Content (message_id filled in when empty), and nothing for other bodies", () => {
    // The fast path is on for the schema as it is (a new Content field would turn it off).
    expect(TEXT_CONTENT_SCHEMA_KNOWN).toBe(true);
    const conversation = fc.option(
      fc.oneof(
        fc.constant({}),
        fc.string({ maxLength: 30 }).map((value) => ({ kind: { case: "accountId" as const, value } })),
        bytes(20).map((value) => ({ kind: { case: "groupId" as const, value } })),
      ),
      { nil: undefined },
    );
    const head = fc.option(
      fc.record({
        treeSize: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        rootHash: bytes(32),
        timestampMs: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        signature: bytes(64),
      }),
      {
        nil: undefined,
      },
    );
    fc.assert(
      fc.property(
        bytes(16),
        bytes(16),
        fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) }),
        conversation,
        fc.string({ unit: "binary", maxLength: 2000 }),
        bytes(16),
        bytes(32),
        head,
        (givenId, ownId, sentAtMs, conv, body, quote, accessKey, logHead) => {
          const content = create(ContentSchema, {
            messageId: ownId,
            sentAtMs,
            conversation: conv,
            body: { case: "text", value: { body, quoteMessageId: quote } },
            senderAccessKey: accessKey,
            logHead,
          });
          const expected = toBinary(ContentSchema, create(ContentSchema, { ...content, messageId: ownId.length > 0 ? ownId : givenId }));
          expect(toHex(encodeTextContent(content, givenId) ?? new Uint8Array())).toBe(toHex(expected));
          // Written into its padded buffer: exactly pad() of the same bytes.
          expect(toHex(encodeTextContent(content, givenId, true) ?? new Uint8Array())).toBe(toHex(pad(expected)));
        },
      ),
      { numRuns: 300 },
    );
    // Texts too long for the reused UTF-8 buffer are encoded on their own, to the same bytes.
    for (const body of ["\u00e9".repeat(20_000), `${"a".repeat(16_383)}\ud800`, "\udc00x".repeat(9_000)]) {
      const content = create(ContentSchema, { sentAtMs: 1n, body: { case: "text", value: { body } } });
      const id = new Uint8Array(16).fill(7);
      const expected = toBinary(ContentSchema, create(ContentSchema, { ...content, messageId: id }));
      expect(toHex(encodeTextContent(content, id) ?? new Uint8Array())).toBe(toHex(expected));
      expect(toHex(encodeTextContent(content, id, true) ?? new Uint8Array())).toBe(toHex(pad(expected)));
    }
    const typing = create(ContentSchema, { body: { case: "typing", value: {} } });
    expect(encodeTextContent(typing, new Uint8Array(16))).toBeUndefined();
    const negative = create(ContentSchema, { sentAtMs: -1n, body: { case: "text", value: { body: "x" } } });
    expect(encodeTextContent(negative, new Uint8Array(16))).toBeUndefined();
  });

  it("DeviceEnvelope (ratchet and prekey)", () => {
    fc.assert(
      fc.property(
        u32,
        bytes(40),
        u32,
        u32,
        bytes(300),
        fc.option(fc.record({ a: u32, b: fc.option(u32, { nil: undefined }), c: u32, d: bytes(40), e: bytes(40), f: bytes(1100), v: u32 }), { nil: undefined }),
        (version, rk, pn, n, ct, pk) => {
          const ratchet = { version, ratchetKey: rk, previousChainLength: pn, counter: n, ciphertext: ct };
          const prekey = pk && {
            version: pk.v,
            identityDhKey: pk.d,
            baseKey: pk.e,
            signedPrekeyId: pk.a,
            oneTimePrekeyId: pk.b,
            kemPrekeyId: pk.c,
            kemCiphertext: pk.f,
          };
          const expected = prekey
            ? create(DeviceEnvelopeSchema, { kind: { case: "prekey", value: { ...prekey, message: ratchet } } })
            : create(DeviceEnvelopeSchema, { kind: { case: "ratchet", value: ratchet } });
          expect(toHex(encodeDeviceEnvelope(ratchet, prekey))).toBe(toHex(toBinary(DeviceEnvelopeSchema, expected)));
          expect(deviceEnvelopeSize(ratchet, ct.length, prekey)).toBe(encodeDeviceEnvelope(ratchet, prekey).length);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("EntryPayload and SharedBody", () => {
    fc.assert(
      fc.property(
        account,
        u32,
        account,
        u32,
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        bytes(40),
        bytes(40),
        bytes(20),
        bytes(3000),
        fc.option(bytes(3000), { nil: undefined }),
        (sa, sd, ra, rd, seq, k, h, id, ct, content) => {
          const e = {
            sender: { accountId: sa, deviceId: sd },
            recipient: { accountId: ra, deviceId: rd },
            channelSequence: seq,
            contentKey: k,
            bodySha256: h,
            messageId: id,
            content,
          };
          const expected = toBinary(EntryPayloadSchema, create(EntryPayloadSchema, { ...e, channelSequence: BigInt(seq) }));
          expect(toHex(encodeEntryPayload(e))).toBe(toHex(expected));
          expect(entryPayloadSize(e)).toBe(expected.length);
          expect(toHex(encodeSealedSharedBody(1, ct))).toBe(
            toHex(toBinary(SharedBodySchema, create(SharedBodySchema, { kind: { case: "sealed", value: { version: 1, ciphertext: ct } } }))),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("padding", () => {
  it("buckets: 256 minimum, then Padmé (at most 12% overhead), and round-trips", () => {
    expect([0, 1, 255].map(paddedLength)).toEqual([256, 256, 256]);
    expect(paddedLength(256)).toBe(272);
    expect(paddedLength(1034)).toBe(1088);
    fc.assert(
      fc.property(bytes(5000), (b) => {
        const padded = pad(b);
        expect(padded.length).toBe(paddedLength(b.length));
        expect(padded.length).toBeLessThanOrEqual(Math.max(256, Math.ceil((b.length + 1) * 1.125)));
        expect(toHex(unpad(padded))).toBe(toHex(b));
      }),
    );
    expect(() => unpad(new Uint8Array(256))).toThrow(/bad padding/);
    const bad = pad(new Uint8Array([1, 2]));
    bad[2] = 0x81;
    expect(() => unpad(bad)).toThrow(/bad padding/);
  });
});

describe.each(PROVIDERS)("safety numbers (%s)", (_name, makeProvider) => {
  const p = makeProvider("safety");
  const dev = () => ({ signingKey: p.random(32), dhKey: p.random(32) });
  const a = { accountId: "alice", devices: [dev(), dev()] };
  const b = { accountId: "bob", devices: [dev()] };

  it("is symmetric, 60 digits, independent of device order", () => {
    const n = safetyNumber(p, a, b);
    expect(n).toMatch(/^\d{60}$/);
    expect(safetyNumber(p, b, a)).toBe(n);
    expect(safetyNumber(p, { ...a, devices: [...a.devices].reverse() }, b)).toBe(n);
  });

  it("changes when any device key changes, or a device is added", () => {
    const n = safetyNumber(p, a, b);
    const changed = { ...a, devices: [a.devices[0], { ...a.devices[1], dhKey: p.random(32) }] };
    expect(safetyNumber(p, changed, b)).not.toBe(n);
    expect(safetyNumber(p, { ...a, devices: [...a.devices, dev()] }, b)).not.toBe(n);
    expect(accountFingerprint(p, "alice", a.devices)).not.toBe(accountFingerprint(p, "alicf", a.devices));
  });
});
