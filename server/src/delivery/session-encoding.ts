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
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import type { DeviceAddress } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { envelope } from "../wire-frames.js";

const utf8 = new TextEncoder();

/** A ReceiveResponse as one stream envelope (flags 0, u32 length, the message): written as is, no second copy. */
export function receiveResponseFrame(ev: ReceiveResponse): Uint8Array {
  if (ev.event.case !== "message") return envelope(0, toBinary(ReceiveResponseSchema, ev));
  const m = prepareMessage(ev.event.value);
  const w = new Writer(lenField(m.size), true);
  w.tag(1, 2).varint(m.size);
  m.write(w);
  return w.done();
}

/** A SessionResponse as one stream envelope. */
export function sessionResponseFrame(r: SessionResponse): Uint8Array {
  const k = r.kind;
  if (k.case === "mailbox" && k.value.event.case === "message") {
    const m = prepareMessage(k.value.event.value);
    const receive = lenField(m.size);
    const w = new Writer(lenField(receive), true);
    w.tag(3, 2).varint(receive).tag(1, 2).varint(m.size);
    m.write(w);
    return w.done();
  }
  if (k.case === "sendResult" && k.value.result.case === "response" && k.value.result.value.outcome.case === "stored") {
    const id = k.value.id;
    const stored = prepareStored(k.value.result.value.outcome.value);
    const response = lenField(stored.size);
    const result = (id !== 0n ? 1 + varintSize(id) : 0) + lenField(response);
    const w = new Writer(lenField(result), true);
    w.tag(1, 2).varint(result);
    if (id !== 0n) w.tag(1, 0).varint(id);
    w.tag(2, 2).varint(response).tag(1, 2).varint(stored.size);
    stored.write(w);
    return w.done();
  }
  return envelope(0, toBinary(SessionResponseSchema, r));
}

/** Stored bytes (the 24 h outcome record each Send writes). */
export function encodeStored(s: Stored): Uint8Array {
  const stored = prepareStored(s);
  const w = new Writer(stored.size);
  stored.write(w);
  return w.done();
}

interface Prepared {
  size: number;
  write(w: Writer): void;
}

function prepareMessage(m: MailboxMessage): Prepared {
  const sender = m.sender && prepareAddress(m.sender);
  const size =
    (m.sequence !== 0n ? 1 + varintSize(m.sequence) : 0) +
    bytesField(m.messageId.length) +
    (sender ? lenField(sender.size) : 0) +
    (m.serverTimestampMs !== 0n ? 1 + varintSize(m.serverTimestampMs) : 0) +
    bytesField(m.sharedBody.length) +
    bytesField(m.entry.length) +
    (m.ephemeral ? 2 : 0) +
    (m.sealed ? 2 : 0);
  return {
    size,
    write(w) {
      if (m.sequence !== 0n) w.tag(1, 0).varint(m.sequence);
      w.bytesField(2, m.messageId);
      if (sender) {
        w.tag(3, 2).varint(sender.size);
        sender.write(w);
      }
      if (m.serverTimestampMs !== 0n) w.tag(4, 0).varint(m.serverTimestampMs);
      w.bytesField(5, m.sharedBody);
      w.bytesField(6, m.entry);
      if (m.ephemeral) w.tag(7, 0).varint(1);
      if (m.sealed) w.tag(8, 0).varint(1);
    },
  };
}

function prepareAddress(a: DeviceAddress): Prepared {
  // Account ids are ASCII (validated where they enter): their length is their UTF-8 size,
  // written a char code each. Anything else goes through the encoder.
  const id = a.accountId;
  const account = isAscii(id) ? id : utf8.encode(id);
  return {
    size: bytesField(account.length) + (a.deviceId !== 0 ? 1 + varintSize(a.deviceId) : 0),
    write(w) {
      if (typeof account === "string") w.asciiField(1, account);
      else w.bytesField(1, account);
      if (a.deviceId !== 0) w.tag(2, 0).varint(a.deviceId);
    },
  };
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function prepareStored(s: Stored): Prepared {
  const entries = s.entries.map((e) => {
    const device = e.device && prepareAddress(e.device);
    return { device, sequence: e.sequence, size: (device ? lenField(device.size) : 0) + (e.sequence !== 0n ? 1 + varintSize(e.sequence) : 0) };
  });
  const size =
    entries.reduce((n, e) => n + lenField(e.size), 0) + (s.serverTimestampMs !== 0n ? 1 + varintSize(s.serverTimestampMs) : 0) + (s.duplicate ? 2 : 0);
  return {
    size,
    write(w) {
      for (const e of entries) {
        w.tag(1, 2).varint(e.size);
        if (e.device) {
          w.tag(1, 2).varint(e.device.size);
          e.device.write(w);
        }
        if (e.sequence !== 0n) w.tag(2, 0).varint(e.sequence);
      }
      if (s.serverTimestampMs !== 0n) w.tag(2, 0).varint(s.serverTimestampMs);
      if (s.duplicate) w.tag(3, 0).varint(1);
    },
  };
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
