/**
 * fast-check arbitraries for protobuf: a random message of any generated schema (every field
 * kind, oneofs, nested messages, lists, maps, extreme numbers, awkward strings), its binary
 * form with random byte mutations, and JSON variants. Used to fuzz every RPC.
 */
import fc from "fast-check";
import { create, toBinary, toJsonString, ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";

export interface MessageArbOptions {
  /** Strings worth hitting often (known account ids, subject wildcards...). */
  strings?: string[];
  /** Nesting depth limit. */
  depth?: number;
}

const U32_EDGES = [0, 1, 2, 3, 0x7fffffff, 0x80000000, 0xffffffff];
const I64_EDGES = [0n, 1n, -1n, 2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n)];
const U64_EDGES = [0n, 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 1n];

/** `big`: may produce values past the size limits (never inside lists, to bound request size). */
function scalarArb(t: ScalarType, strings: string[], big = true): fc.Arbitrary<unknown> {
  switch (t) {
    case ScalarType.STRING:
      return fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...strings) },
        { weight: 2, arbitrary: fc.string({ maxLength: 70 }) },
        { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 70 }) },
        ...(big ? [{ weight: 1, arbitrary: fc.constant("x".repeat(5000)) }] : []),
      );
    case ScalarType.BYTES:
      return fc.oneof(
        { weight: 4, arbitrary: fc.uint8Array({ maxLength: 80 }) },
        { weight: 2, arbitrary: fc.constantFrom(16, 32, 64, 1184, 1088).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })) },
        ...(big ? [{ weight: 1, arbitrary: fc.constantFrom(4097, 262_145, 600_000).map((n) => new Uint8Array(n).fill(7)) }] : []),
      );
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.constantFrom(...U32_EDGES), fc.nat({ max: 0xffffffff }));
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.constantFrom(0, 1, -1, 0x7fffffff, -0x80000000), fc.integer());
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.constantFrom(...U64_EDGES), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 100n }));
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.oneof(fc.constantFrom(...I64_EDGES), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
  }
}

function fieldArb(f: DescField, o: Required<MessageArbOptions>, depth: number, big: boolean): fc.Arbitrary<unknown> | undefined {
  switch (f.fieldKind) {
    case "scalar":
      return scalarArb(f.scalar, o.strings, big);
    case "enum":
      return fc.oneof(fc.constantFrom(...f.enum.values.map((v) => v.number)), fc.integer({ min: -5, max: 1000 }));
    case "message":
      return depth <= 0 ? undefined : initArb(f.message, o, depth - 1, big);
    case "list": {
      const item =
        f.listKind === "scalar"
          ? scalarArb(f.scalar, o.strings, false)
          : f.listKind === "enum"
            ? fc.integer({ min: 0, max: 10 })
            : depth <= 0
              ? undefined
              : initArb(f.message, o, depth - 1, false);
      if (!item) return undefined;
      // Mostly short lists; sometimes past the schema's limits (100 prekeys, 1000 entries/acks).
      return fc.oneof(
        { weight: 6, arbitrary: fc.array(item, { maxLength: 4 }) },
        { weight: 1, arbitrary: fc.constantFrom(101, 257, 1001).chain((n) => fc.array(item, { minLength: n, maxLength: n, size: "xsmall" })) },
      );
    }
    case "map": {
      const value =
        f.mapKind === "scalar"
          ? scalarArb(f.scalar, o.strings, false)
          : f.mapKind === "enum"
            ? fc.integer({ min: 0, max: 10 })
            : depth <= 0
              ? undefined
              : initArb(f.message, o, depth - 1, false);
      if (!value) return undefined;
      return fc.dictionary(fc.string({ maxLength: 8 }), value, { maxKeys: 3 });
    }
  }
}

/** A MessageInitShape-like object for `desc`: each field present or not, one member per oneof. */
function initArb(desc: DescMessage, o: Required<MessageArbOptions>, depth: number, big = true): fc.Arbitrary<Record<string, unknown>> {
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of desc.fields) {
    if (f.oneof) continue;
    const a = fieldArb(f, o, depth, big);
    if (a) parts[f.localName] = fc.option(a, { nil: undefined, freq: 3 });
  }
  for (const oneof of desc.oneofs) {
    const members = oneof.fields
      .map((f) => {
        const a = fieldArb(f, o, depth, big);
        return a ? a.map((value) => ({ case: f.localName, value })) : undefined;
      })
      .filter((a): a is fc.Arbitrary<{ case: string; value: unknown }> => !!a);
    if (members.length) parts[oneof.localName] = fc.option(fc.oneof(...members), { nil: undefined, freq: 3 });
  }
  return fc.record(parts).map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)));
}

/** A random, schema-valid message of `desc`. */
export function arbitraryMessage(desc: DescMessage, opts: MessageArbOptions = {}) {
  const o = { strings: opts.strings?.length ? opts.strings : ["alice"], depth: opts.depth ?? 3 };
  return initArb(desc, o, o.depth).map((init) => create(desc, init as never));
}

type Mutation = [op: "flip" | "insert" | "delete" | "truncate" | "dup" | "ff", at: number, value: number];

const mutationArb: fc.Arbitrary<Mutation> = fc.tuple(fc.constantFrom("flip", "insert", "delete", "truncate", "dup", "ff"), fc.nat(), fc.nat(255));

/** Applies byte-level mutations (bit flips, inserted/deleted/duplicated bytes, truncation, 0xff varints). */
export function mutate(bytes: Uint8Array, ops: Mutation[]): Uint8Array {
  let b = Buffer.from(bytes);
  for (const [op, at0, v] of ops) {
    const at = b.length ? at0 % (b.length + 1) : 0;
    switch (op) {
      case "flip":
        if (b.length) b[at % b.length] ^= 1 << (v % 8);
        break;
      case "insert":
        b = Buffer.concat([b.subarray(0, at), Buffer.from([v]), b.subarray(at)]);
        break;
      case "delete":
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + (v % 8))]);
        break;
      case "truncate":
        b = b.subarray(0, at);
        break;
      case "dup":
        b = Buffer.concat([b, b.subarray(at, at + 1 + v)]);
        break;
      case "ff":
        b = Buffer.concat([b.subarray(0, at), Buffer.alloc(1 + (v % 11), 0xff), b.subarray(at)]);
        break;
    }
  }
  return new Uint8Array(b);
}

/** Request bodies for the binary protocols: valid random messages, mutated ones, or noise. */
export function arbitraryBinaryBody(desc: DescMessage, opts: MessageArbOptions = {}): fc.Arbitrary<Uint8Array> {
  const valid = arbitraryMessage(desc, opts).map((m) => toBinary(desc, m));
  return fc.oneof(
    { weight: 4, arbitrary: valid },
    { weight: 4, arbitrary: fc.tuple(valid, fc.array(mutationArb, { minLength: 1, maxLength: 6 })).map(([b, ops]) => mutate(b, ops)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
  );
}

/** Request bodies for Connect JSON: valid JSON of random messages, mangled JSON, or any JSON. */
export function arbitraryJsonBody(desc: DescMessage, opts: MessageArbOptions = {}): fc.Arbitrary<Uint8Array> {
  const valid = arbitraryMessage(desc, opts).map((m) => toJsonString(desc, m));
  const enc = (s: string) => new TextEncoder().encode(s);
  return fc.oneof(
    { weight: 4, arbitrary: valid.map(enc) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(valid, fc.nat(), fc.string({ maxLength: 3 }))
        .map(([s, at, ins]) => enc(s.slice(0, at % (s.length + 1)) + ins + s.slice(at % (s.length + 1)))),
    },
    { weight: 2, arbitrary: fc.json({ maxDepth: 3 }).map(enc) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 100 }) },
  );
}
