/**
 * The hand decoders of SendRequest and of a Session's send give exactly what fromBinary gives,
 * or give up: on random requests, on the same requests with their fields reordered, repeated,
 * extended by unknown fields or cut short, and on random bytes. Whenever fromBinary throws,
 * they give up (so the caller reports fromBinary's error).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SendRequestSchema, SessionRequestSchema, type SendRequest } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { decodeSendRequest, decodeSessionSend } from "../src/delivery/send-request-decoding.js";

const RUNS = process.env.SEALPOST_LONG ? 5000 : 400;

const ascii = fc.string({ unit: fc.constantFrom("a", "b", "_", "-", "0", "Z"), maxLength: 12 });
const accountId = fc.oneof({ weight: 8, arbitrary: ascii }, { weight: 1, arbitrary: fc.string({ maxLength: 6 }) });
const u64 = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 300n }) },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 49n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
);
const sendRequest = fc
  .record({
    messageId: fc.uint8Array({ maxLength: 20 }),
    sharedBody: fc.uint8Array({ maxLength: 300 }),
    entries: fc.array(
      fc.record({
        device: fc.option(fc.record({ accountId, deviceId: fc.oneof(fc.nat(300), fc.nat(0xffffffff)) }), { nil: undefined }),
        entry: fc.uint8Array({ maxLength: 40 }),
      }),
      { maxLength: 4 },
    ),
    versions: fc.array(fc.record({ accountId, deviceListVersion: u64 }), { maxLength: 3 }),
    ephemeral: fc.boolean(),
    retry: fc.boolean(),
  })
  .map((init) => create(SendRequestSchema, init));

/** Protobuf tag bytes and a varint. */
function varint(v: bigint): number[] {
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

/** The top-level fields of an encoded message, as separate byte runs (to reorder, repeat or drop). */
function fields(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  const readVarint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= b.length) throw new Error("truncated test encoding");
      const byte = b[pos++];
      v |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return v;
      shift += 7n;
    }
  };
  while (pos < b.length) {
    const start = pos;
    const tag = Number(readVarint());
    if ((tag & 7) === 0) readVarint();
    else {
      const len = Number(readVarint());
      pos += len;
    }
    out.push(b.subarray(start, pos));
  }
  return out;
}

const concat = (parts: (Uint8Array | number[])[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

/** Mangles an encoding: reorder, repeat a field, add an unknown field, cut it short, flip a byte. */
const mangled = (b: Uint8Array) =>
  fc.oneof(
    fc.constant(b),
    fc.shuffledSubarray(fields(b), { minLength: fields(b).length }).map(concat),
    fc.nat().map((i) => {
      const f = fields(b);
      return f.length ? concat([...f, f[i % f.length]]) : b;
    }),
    fc
      .tuple(fc.integer({ min: 1, max: 40 }), fc.uint8Array({ maxLength: 8 }))
      .map(([n, junk]) => concat([b, varint(BigInt(n * 8 + 2)), varint(BigInt(junk.length)), junk])),
    fc.nat().map((i) => b.subarray(0, b.length ? i % b.length : 0)),
    fc.tuple(fc.nat(), fc.nat(255)).map(([i, x]) => {
      const c = b.slice();
      if (c.length) c[i % c.length] ^= x;
      return c;
    }),
  );

/** fromBinary's result, or "throws". */
function reference<T>(f: () => T): T | "throws" {
  try {
    return f();
  } catch {
    return "throws";
  }
}

describe("hand decoding of Send requests", () => {
  it("SendRequest: the same message as fromBinary, or gives up (always when fromBinary throws)", () => {
    let decoded = 0;
    fc.assert(
      fc.property(
        sendRequest.chain((r) => mangled(toBinary(SendRequestSchema, r))),
        (bytes) => {
          const quick = decodeSendRequest(bytes);
          const ref = reference(() => fromBinary(SendRequestSchema, bytes));
          if (ref === "throws") expect(quick).toBeUndefined();
          else if (quick) {
            decoded++;
            expect(quick).toEqual(ref);
          }
        },
      ),
      // Seeded: how many mangled encodings stay decodable is a draw, and the bound below
      // (the hand decoder really ran) must not depend on the run's luck (99 of 400 once).
      { numRuns: RUNS, seed: 7 },
    );
    expect(decoded).toBeGreaterThan(RUNS / 4);
  });

  it("a Session's send: the same message as fromBinary, or gives up; other Session requests are left to fromBinary", () => {
    let decoded = 0;
    const session = fc
      .tuple(u64, fc.option(sendRequest, { nil: undefined }))
      .map(([id, request]) => create(SessionRequestSchema, { kind: { case: "send", value: { id, request } } }));
    fc.assert(
      fc.property(
        session.chain((r) => mangled(toBinary(SessionRequestSchema, r))),
        (bytes) => {
          const quick = decodeSessionSend(bytes);
          const ref = reference(() => fromBinary(SessionRequestSchema, bytes));
          if (ref === "throws") expect(quick).toBeUndefined();
          else if (quick) {
            decoded++;
            expect(quick).toEqual(ref);
          }
        },
      ),
      // Seeded: how many mangled encodings stay decodable is a draw, and the bound below
      // (the hand decoder really ran) must not depend on the run's luck (99 of 400 once).
      { numRuns: RUNS, seed: 7 },
    );
    expect(decoded).toBeGreaterThan(RUNS / 4);
    const ack = toBinary(SessionRequestSchema, create(SessionRequestSchema, { kind: { case: "ack", value: { id: 1n, request: { sequences: [1n] } } } }));
    expect(decodeSessionSend(ack)).toBeUndefined();
    expect(decodeSessionSend(new Uint8Array(0))).toBeUndefined();
  });

  it("random bytes: never a result fromBinary would not give", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        for (const [quick, schema] of [
          [decodeSendRequest(bytes), SendRequestSchema],
          [decodeSessionSend(bytes), SessionRequestSchema],
        ] as const) {
          if (quick === undefined) continue;
          expect(quick).toEqual(fromBinary(schema as typeof SendRequestSchema, bytes));
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("what protobuf merges or truncates goes to fromBinary: a Session send's request twice, a device id above 32 bits", () => {
    const len = (field: number, body: Uint8Array | number[]) => [...varint(BigInt(field * 8 + 2)), ...varint(BigInt(body.length)), ...body];
    const one = toBinary(SendRequestSchema, create(SendRequestSchema, { messageId: new Uint8Array(16).fill(1), entries: [{ entry: Uint8Array.of(1) }] }));
    const two = toBinary(SendRequestSchema, create(SendRequestSchema, { sharedBody: Uint8Array.of(2), entries: [{ entry: Uint8Array.of(2) }] }));
    // SessionRequest { send { id: 7, request: one, request: two } }: protobuf merges the two requests.
    const session = Uint8Array.from(len(1, [8, ...varint(7n), ...len(2, one), ...len(2, two)]));
    const merged = fromBinary(SessionRequestSchema, session);
    expect(merged.kind.case === "send" && merged.kind.value.request?.entries.length).toBe(2);
    const quick = decodeSessionSend(session);
    if (quick) expect(quick).toEqual(merged);

    const device = [...len(1, [...len(1, [0x61]), 16, ...varint(2n ** 33n + 5n)])];
    const request = Uint8Array.from(len(3, device));
    const truncated = fromBinary(SendRequestSchema, request);
    expect(truncated.entries[0].device?.deviceId).toBe(5);
    const q = decodeSendRequest(request);
    if (q) expect(q).toEqual(truncated);
  });

  it("fields it does not know go to fromBinary, which keeps them as unknown fields", () => {
    const r: SendRequest = create(SendRequestSchema, { messageId: new Uint8Array(16).fill(1) });
    const withUnknown = concat([toBinary(SendRequestSchema, r), varint(BigInt(99 * 8)), [1]]);
    expect(decodeSendRequest(withUnknown)).toBeUndefined();
    expect(fromBinary(SendRequestSchema, withUnknown).$unknown?.length).toBe(1);
  });
});
