/**
 * Hand-written decoders for the hot-path envelope messages that accept only their canonical
 * encoding: the bytes wire.ts (and protobuf-es `toBinary`) writes, i.e. fields in number
 * order, each at most once, proto3 defaults omitted, minimal varints, nothing unknown. On any
 * other input they return undefined and the caller decides: a DeviceEnvelope must be
 * canonical (it is refused), an EntryPayload or a SharedBody is decoded again by protobuf-es,
 * which accepts every valid encoding. Where these accept, they yield exactly what protobuf-es
 * `fromBinary` yields (property-tested in clients/ts/test/canonical-decoding.test.ts), at a
 * fraction of the cost: no reflection, no re-encoding to check canonicity.
 */
import type { Content, Conversation } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { EntryPayload } from "@sealpost/gen/sealpost/envelope/v1/device_envelope_pb.js";
import type { SealedBody } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";

/** Thrown inside the decoders only; the exported functions turn it into undefined. */
const NOT_CANONICAL = new Error("not canonical");

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
// As protobuf-es decodes proto3 strings: invalid UTF-8 refused, a leading U+FEFF kept as text.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class CanonicalReader {
  pos: number;
  private lastField = 0;
  private wireType = -1;
  // Typed as the generated messages type their bytes fields (protobuf-es returns views too).
  private readonly buf: Uint8Array<ArrayBuffer>;

  constructor(
    buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.buf = buf as Uint8Array<ArrayBuffer>;
    this.pos = start;
  }

  /**
   * The number of the next field, 0 at the end of the message. Every field number of these
   * messages is below 16, so a canonical tag is one byte; numbers must grow.
   */
  next(): number {
    if (this.pos === this.end) return 0;
    const tag = this.buf[this.pos++];
    const field = tag >>> 3;
    if (tag >= 0x80 || field <= this.lastField) throw NOT_CANONICAL;
    this.lastField = field;
    this.wireType = tag & 7;
    return field;
  }

  private varint(): number {
    const buf = this.buf;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw NOT_CANONICAL;
      const b = buf[this.pos++];
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        // A longer encoding than needed ends in a zero byte.
        if (b === 0 && i > 0) throw NOT_CANONICAL;
        if (value > Number.MAX_SAFE_INTEGER) throw NOT_CANONICAL;
        return value;
      }
      scale *= 128;
    }
    throw NOT_CANONICAL;
  }

  /** A uint32 field; `explicit` for fields with presence (proto3 `optional`), where 0 is written. */
  uint32(explicit = false): number {
    if (this.wireType !== WIRE_VARINT) throw NOT_CANONICAL;
    const v = this.varint();
    if (v > 0xffffffff || (v === 0 && !explicit)) throw NOT_CANONICAL;
    return v;
  }

  /** A uint64 field within Number.MAX_SAFE_INTEGER (larger values take protobuf-es's path). */
  uint64(): bigint {
    if (this.wireType !== WIRE_VARINT) throw NOT_CANONICAL;
    const v = this.varint();
    if (v === 0) throw NOT_CANONICAL;
    return BigInt(v);
  }

  /** The bounds of a length-delimited field. */
  private span(): [number, number] {
    if (this.wireType !== WIRE_LEN) throw NOT_CANONICAL;
    const length = this.varint();
    const start = this.pos;
    if (length > this.end - start) throw NOT_CANONICAL;
    this.pos = start + length;
    return [start, this.pos];
  }

  /**
   * A bytes field (a view into the input, as protobuf-es returns); never empty when written,
   * unless it has presence (`present`: a oneof member, written even when empty).
   */
  bytes(present = false): Uint8Array<ArrayBuffer> {
    const [start, end] = this.span();
    if (start === end && !present) throw NOT_CANONICAL;
    return this.buf.subarray(start, end);
  }

  /** A string field of printable ASCII (account ids): anything else takes protobuf-es's path. */
  ascii(): string {
    const [start, end] = this.span();
    if (start === end) throw NOT_CANONICAL;
    let s = "";
    for (let i = start; i < end; i++) {
      const c = this.buf[i];
      if (c < 0x20 || c > 0x7e) throw NOT_CANONICAL;
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** A string field of any text: valid UTF-8 (as protobuf-es's proto3 check); empty as bytes() says. */
  utf8(present = false): string {
    const [start, end] = this.span();
    if (start === end && !present) throw NOT_CANONICAL;
    try {
      return strictUtf8.decode(this.buf.subarray(start, end));
    } catch {
      throw NOT_CANONICAL; // protobuf-es refuses it with its own message
    }
  }

  /** An embedded message (present even when empty). */
  message(): CanonicalReader {
    const [start, end] = this.span();
    return new CanonicalReader(this.buf, start, end);
  }
}

/** A RatchetMessage's fields (absent ones as proto3 defaults: 0 and empty bytes). */
export interface RatchetMessageFields {
  version: number;
  ratchetKey: Uint8Array;
  previousChainLength: number;
  counter: number;
  ciphertext: Uint8Array;
  kemPublicKey: Uint8Array;
  kemPublicKeyId: number;
  kemCiphertext: Uint8Array;
  kemCiphertextKeyId: number;
}

/** A PrekeyMessage's fields and its RatchetMessage. */
export interface PrekeyMessageFields {
  version: number;
  identityDhKey: Uint8Array;
  baseKey: Uint8Array;
  signedPrekeyId: number;
  oneTimePrekeyId?: number;
  kemPrekeyId: number;
  kemCiphertext: Uint8Array;
  message: RatchetMessageFields;
}

export type DeviceEnvelopeFields = { case: "ratchet"; value: RatchetMessageFields } | { case: "prekey"; value: PrekeyMessageFields };

const EMPTY: Uint8Array<ArrayBuffer> = new Uint8Array(0);

function readRatchet(r: CanonicalReader): RatchetMessageFields {
  const m: RatchetMessageFields = {
    version: 0,
    ratchetKey: EMPTY,
    previousChainLength: 0,
    counter: 0,
    ciphertext: EMPTY,
    kemPublicKey: EMPTY,
    kemPublicKeyId: 0,
    kemCiphertext: EMPTY,
    kemCiphertextKeyId: 0,
  };
  for (let f = r.next(); f !== 0; f = r.next()) {
    if (f === 1) m.version = r.uint32();
    else if (f === 2) m.ratchetKey = r.bytes();
    else if (f === 3) m.previousChainLength = r.uint32();
    else if (f === 4) m.counter = r.uint32();
    else if (f === 5) m.ciphertext = r.bytes();
    else if (f === 6) m.kemPublicKey = r.bytes();
    else if (f === 7) m.kemPublicKeyId = r.uint32();
    else if (f === 8) m.kemCiphertext = r.bytes();
    else if (f === 9) m.kemCiphertextKeyId = r.uint32();
    else throw NOT_CANONICAL;
  }
  return m;
}

function readPrekey(r: CanonicalReader): PrekeyMessageFields {
  let version = 0;
  let identityDhKey = EMPTY;
  let baseKey = EMPTY;
  let signedPrekeyId = 0;
  let oneTimePrekeyId: number | undefined;
  let kemPrekeyId = 0;
  let kemCiphertext = EMPTY;
  let message: RatchetMessageFields | undefined;
  for (let f = r.next(); f !== 0; f = r.next()) {
    if (f === 1) version = r.uint32();
    else if (f === 2) identityDhKey = r.bytes();
    else if (f === 3) baseKey = r.bytes();
    else if (f === 4) signedPrekeyId = r.uint32();
    else if (f === 5) oneTimePrekeyId = r.uint32(true);
    else if (f === 6) kemPrekeyId = r.uint32();
    else if (f === 7) kemCiphertext = r.bytes();
    else if (f === 8) message = readRatchet(r.message());
    else throw NOT_CANONICAL;
  }
  // Our encoder always writes the ratchet message; an envelope without one is not ours.
  if (!message) throw NOT_CANONICAL;
  return { version, identityDhKey, baseKey, signedPrekeyId, oneTimePrekeyId, kemPrekeyId, kemCiphertext, message };
}

/**
 * A DeviceEnvelope in its canonical encoding (one of its two kinds, a prekey message with its
 * ratchet message), or undefined for any other bytes, valid protobuf or not.
 */
export function decodeCanonicalDeviceEnvelope(entry: Uint8Array): DeviceEnvelopeFields | undefined {
  try {
    const r = new CanonicalReader(entry, 0, entry.length);
    const field = r.next();
    let kind: DeviceEnvelopeFields;
    if (field === 1) kind = { case: "prekey", value: readPrekey(r.message()) };
    else if (field === 2) kind = { case: "ratchet", value: readRatchet(r.message()) };
    else throw NOT_CANONICAL;
    if (r.next() !== 0) throw NOT_CANONICAL;
    return kind;
  } catch (e) {
    if (e === NOT_CANONICAL) return undefined;
    throw e;
  }
}

function readAddress(r: CanonicalReader): { $typeName: "sealpost.directory.v1.DeviceAddress"; accountId: string; deviceId: number } {
  let accountId = "";
  let deviceId = 0;
  for (let f = r.next(); f !== 0; f = r.next()) {
    if (f === 1) accountId = r.ascii();
    else if (f === 2) deviceId = r.uint32();
    else throw NOT_CANONICAL;
  }
  return { $typeName: "sealpost.directory.v1.DeviceAddress", accountId, deviceId };
}

/** An EntryPayload in its canonical encoding, or undefined (then decode it with protobuf-es). */
export function decodeCanonicalEntryPayload(bytes: Uint8Array): EntryPayload | undefined {
  try {
    const r = new CanonicalReader(bytes, 0, bytes.length);
    const payload: EntryPayload = {
      $typeName: "sealpost.envelope.v1.EntryPayload",
      sender: undefined,
      recipient: undefined,
      channelSequence: 0n,
      contentKey: EMPTY,
      bodySha256: EMPTY,
      messageId: EMPTY,
      content: EMPTY,
    };
    for (let f = r.next(); f !== 0; f = r.next()) {
      if (f === 1) payload.sender = readAddress(r.message());
      else if (f === 2) payload.recipient = readAddress(r.message());
      else if (f === 3) payload.channelSequence = r.uint64();
      else if (f === 4) payload.contentKey = r.bytes();
      else if (f === 5) payload.bodySha256 = r.bytes();
      else if (f === 6) payload.messageId = r.bytes();
      else if (f === 7) payload.content = r.bytes();
      else throw NOT_CANONICAL;
    }
    return payload;
  } catch (e) {
    if (e === NOT_CANONICAL) return undefined;
    throw e;
  }
}

/**
 * A SharedBody holding a SealedBody, in its canonical encoding; undefined for anything else
 * (a sender-key body, another encoding): then decode it with protobuf-es.
 */
export function decodeCanonicalSealedBody(bytes: Uint8Array): SealedBody | undefined {
  try {
    const r = new CanonicalReader(bytes, 0, bytes.length);
    if (r.next() !== 1) throw NOT_CANONICAL;
    const m = r.message();
    if (r.next() !== 0) throw NOT_CANONICAL;
    const sealed: SealedBody = { $typeName: "sealpost.envelope.v1.SealedBody", version: 0, ciphertext: EMPTY };
    for (let f = m.next(); f !== 0; f = m.next()) {
      if (f === 1) sealed.version = m.uint32();
      else if (f === 2) sealed.ciphertext = m.bytes();
      else throw NOT_CANONICAL;
    }
    return sealed;
  } catch (e) {
    if (e === NOT_CANONICAL) return undefined;
    throw e;
  }
}

/**
 * A text Content in its canonical encoding (what wire.ts encodeTextContent writes: message id,
 * time, conversation, text, access key), or undefined for any other Content or encoding (a
 * log head, another kind of body, a negative time): then decode it with protobuf-es.
 */
export function decodeCanonicalTextContent(bytes: Uint8Array): Content | undefined {
  try {
    const r = new CanonicalReader(bytes, 0, bytes.length);
    const content: Content = {
      $typeName: "sealpost.envelope.v1.Content",
      messageId: EMPTY,
      sentAtMs: 0n,
      conversation: undefined,
      body: { case: undefined },
      senderAccessKey: EMPTY,
      logHead: undefined,
    };
    for (let f = r.next(); f !== 0; f = r.next()) {
      if (f === 1) content.messageId = r.bytes();
      else if (f === 2) content.sentAtMs = r.uint64();
      else if (f === 3) content.conversation = readConversation(r.message());
      else if (f === 4) {
        const t = r.message();
        const text = { $typeName: "sealpost.envelope.v1.Text" as const, body: "", quoteMessageId: EMPTY };
        for (let g = t.next(); g !== 0; g = t.next()) {
          if (g === 1) text.body = t.utf8();
          else if (g === 2) text.quoteMessageId = t.bytes();
          else throw NOT_CANONICAL;
        }
        content.body = { case: "text", value: text };
      } else if (f === 11) content.senderAccessKey = r.bytes();
      else throw NOT_CANONICAL;
    }
    if (content.body.case !== "text") throw NOT_CANONICAL;
    return content;
  } catch (e) {
    if (e === NOT_CANONICAL) return undefined;
    throw e;
  }
}

function readConversation(r: CanonicalReader): Conversation {
  const f = r.next();
  let kind: Conversation["kind"];
  if (f === 1) kind = { case: "accountId", value: r.utf8(true) };
  else if (f === 2) kind = { case: "groupId", value: r.bytes(true) };
  else if (f === 0) kind = { case: undefined };
  else throw NOT_CANONICAL;
  if (f !== 0 && r.next() !== 0) throw NOT_CANONICAL;
  return { $typeName: "sealpost.envelope.v1.Conversation", kind };
}
