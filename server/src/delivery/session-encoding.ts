/**
 * The two answers every routed message costs, encoded by hand: a mailbox message (Receive's
 * ReceiveResponse, or a Session's SessionResponse around it) and a Stored send result (and
 * the Stored outcome record itself). The
 * reflective encoder (protobuf-es toBinary) spent ~4 us on a 1 KiB mailbox message, growing
 * its buffer as it went; this computes the size first and writes once. The bytes are
 * exactly toBinary's (proto3 canonical: fields in number order, defaults left out), which
 * session-encoding.test.ts checks on generated messages; anything else goes to toBinary.
 */
import { toBinary } from "@bufbuild/protobuf";
import {
  ReceiveResponseSchema,
  SessionResponseSchema,
  type ReceiveResponse,
  type SessionResponse,
  type Stored,
  type StoredEntry,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import type { DeviceAddress } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { envelope } from "../wire-frames.js";

const utf8 = new TextEncoder();

/** A ReceiveResponse as one stream envelope (flags 0, u32 length, the message): written as is, no second copy. */
export function receiveResponseFrame(ev: ReceiveResponse): Uint8Array {
  if (ev.event.case !== "message") return envelope(0, toBinary(ReceiveResponseSchema, ev));
  const m = ev.event.value;
  const size = messageSize(m);
  const w = new Writer(lenField(size), true);
  w.tag(1, 2).varint(size);
  writeMessage(w, m);
  return w.done();
}

/** A SessionResponse as one stream envelope. */
export function sessionResponseFrame(r: SessionResponse): Uint8Array {
  const k = r.kind;
  if (k.case === "mailbox" && k.value.event.case === "message") {
    const m = k.value.event.value;
    const size = messageSize(m);
    const receive = lenField(size);
    const w = new Writer(lenField(receive), true);
    w.tag(3, 2).varint(receive).tag(1, 2).varint(size);
    writeMessage(w, m);
    return w.done();
  }
  if (k.case === "sendResult" && k.value.result.case === "response" && k.value.result.value.outcome.case === "stored") {
    const id = k.value.id;
    const stored = k.value.result.value.outcome.value;
    const size = storedSize(stored);
    const response = lenField(size);
    const result = (id !== 0n ? 1 + varintSize(id) : 0) + lenField(response);
    const w = new Writer(lenField(result), true);
    w.tag(1, 2).varint(result);
    if (id !== 0n) w.tag(1, 0).varint(id);
    w.tag(2, 2).varint(response).tag(1, 2).varint(size);
    writeStored(w, stored);
    return w.done();
  }
  return envelope(0, toBinary(SessionResponseSchema, r));
}

/** Stored bytes (the 24 h outcome record each Send writes). */
export function encodeStored(s: Stored): Uint8Array {
  const w = new Writer(storedSize(s));
  writeStored(w, s);
  return w.done();
}

// Each message has a size function and a write function: sizes are recomputed (a few
// additions) rather than kept in closures, which cost an object and a context per field
// per routed message.

function messageSize(m: MailboxMessage): number {
  return (
    (m.sequence !== 0n ? 1 + varintSize(m.sequence) : 0) +
    bytesField(m.messageId.length) +
    (m.sender ? lenField(addressSize(m.sender)) : 0) +
    (m.serverTimestampMs !== 0n ? 1 + varintSize(m.serverTimestampMs) : 0) +
    bytesField(m.sharedBody.length) +
    bytesField(m.entry.length) +
    (m.ephemeral ? 2 : 0) +
    (m.sealed ? 2 : 0)
  );
}

function writeMessage(w: Writer, m: MailboxMessage): void {
  if (m.sequence !== 0n) w.tag(1, 0).varint(m.sequence);
  w.bytesField(2, m.messageId);
  if (m.sender) {
    w.tag(3, 2).varint(addressSize(m.sender));
    writeAddress(w, m.sender);
  }
  if (m.serverTimestampMs !== 0n) w.tag(4, 0).varint(m.serverTimestampMs);
  w.bytesField(5, m.sharedBody);
  w.bytesField(6, m.entry);
  if (m.ephemeral) w.tag(7, 0).varint(1);
  if (m.sealed) w.tag(8, 0).varint(1);
}

// Account ids are ASCII (validated where they enter): their length is their UTF-8 size,
// written a char code each. Anything else goes through the encoder.
function addressSize(a: DeviceAddress): number {
  const id = a.accountId;
  return bytesField(isAscii(id) ? id.length : utf8.encode(id).length) + (a.deviceId !== 0 ? 1 + varintSize(a.deviceId) : 0);
}

function writeAddress(w: Writer, a: DeviceAddress): void {
  const id = a.accountId;
  if (isAscii(id)) w.asciiField(1, id);
  else w.bytesField(1, utf8.encode(id));
  if (a.deviceId !== 0) w.tag(2, 0).varint(a.deviceId);
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function storedEntrySize(e: StoredEntry): number {
  return (e.device ? lenField(addressSize(e.device)) : 0) + (e.sequence !== 0n ? 1 + varintSize(e.sequence) : 0);
}

function storedSize(s: Stored): number {
  let size = (s.serverTimestampMs !== 0n ? 1 + varintSize(s.serverTimestampMs) : 0) + (s.duplicate ? 2 : 0);
  for (const e of s.entries) size += lenField(storedEntrySize(e));
  return size;
}

function writeStored(w: Writer, s: Stored): void {
  for (const e of s.entries) {
    w.tag(1, 2).varint(storedEntrySize(e));
    if (e.device) {
      w.tag(1, 2).varint(addressSize(e.device));
      writeAddress(w, e.device);
    }
    if (e.sequence !== 0n) w.tag(2, 0).varint(e.sequence);
  }
  if (s.serverTimestampMs !== 0n) w.tag(2, 0).varint(s.serverTimestampMs);
  if (s.duplicate) w.tag(3, 0).varint(1);
}

/** A length-delimited field of `len` bytes: its tag (one byte for fields 1-15), length and payload. */
const lenField = (len: number) => 1 + varintSize(len) + len;
/** A bytes or string field, left out when empty (proto3 default). */
const bytesField = (len: number) => (len ? lenField(len) : 0);

// Sequences and timestamps are bigints in the generated types but far below 2^53: as numbers
// they encode without a BigInt allocation per step.
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function varintSize(v: number | bigint): number {
  if (typeof v === "bigint" && v >= 0n && v <= MAX_SAFE) v = Number(v);
  if (typeof v === "bigint") {
    if (v < 0n) return 10; // two's complement over 64 bits
    let n = 1;
    while (v >= 0x80n) {
      v >>= 7n;
      n++;
    }
    return n;
  }
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/**
 * Writes a message of a size known in advance into one buffer, optionally behind the 5-byte
 * envelope header of a stream frame. The buffer comes from Node's pool (Buffer.allocUnsafe:
 * no zero fill, no ArrayBuffer of its own under 4 KiB); done() checks every byte was written.
 */
class Writer {
  private readonly buf: Buffer;
  private pos = 0;

  constructor(size: number, frame = false) {
    this.buf = Buffer.allocUnsafe(size + (frame ? 5 : 0));
    if (frame) {
      this.buf[0] = 0;
      this.buf.writeUInt32BE(size, 1);
      this.pos = 5;
    }
  }

  /** Field numbers 1-15 only (one byte). */
  tag(field: number, wireType: number): this {
    this.buf[this.pos++] = (field << 3) | wireType;
    return this;
  }

  varint(v: number | bigint): this {
    if (typeof v === "bigint" && v >= 0n && v <= MAX_SAFE) v = Number(v);
    if (typeof v === "bigint") {
      let x = BigInt.asUintN(64, v);
      while (x >= 0x80n) {
        this.buf[this.pos++] = Number(x & 0x7fn) | 0x80;
        x >>= 7n;
      }
      this.buf[this.pos++] = Number(x);
      return this;
    }
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
    return this;
  }

  bytesField(field: number, b: Uint8Array): this {
    if (!b.length) return this;
    this.tag(field, 2).varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** A string field whose characters are all ASCII (the caller checked). */
  asciiField(field: number, s: string): this {
    if (!s.length) return this;
    this.tag(field, 2).varint(s.length);
    for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i);
    return this;
  }

  done(): Uint8Array {
    if (this.pos !== this.buf.length) throw new Error(`encoded ${this.pos} bytes, expected ${this.buf.length}`);
    return this.buf;
  }
}
