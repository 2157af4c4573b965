/**
 * The bytes of one stored mailbox message: a compact binary record (no schema churn, no
 * parse of ciphertext). The stream sequence is not inside; it comes from JetStream.
 *
 *   u8  version (1)
 *   u8  flags: 1 = ephemeral, 2 = body is a reference (key in SP_BODIES), else inline,
 *       4 = sealed (sender account id empty, device 0: the server does not know the sender)
 *   16  message id
 *   u64 server timestamp, ms since the epoch (big endian)
 *   u8  sender account id length, then its ASCII bytes
 *   u32 sender device id
 *   u32 entry length, then the entry bytes
 *   ... the rest: the body bytes (inline) or the body key (ASCII)
 */
const VERSION = 1;
const FLAG_EPHEMERAL = 1;
const FLAG_BODY_REF = 2;
const FLAG_SEALED = 4;
const unascii = new TextDecoder();

export interface MailboxRecord {
  messageId: Uint8Array;
  senderAccountId: string;
  senderDeviceId: number;
  timestampMs: number;
  entry: Uint8Array;
  ephemeral: boolean;
  /** Sent with SendSealed: no sender (senderAccountId "" and senderDeviceId 0). */
  sealed?: boolean;
  /** Exactly one of body (inline) and bodyKey (stored once in SP_BODIES). */
  body?: Uint8Array;
  bodyKey?: string;
}

export class RecordFormatError extends Error {
  override name = "RecordFormatError";
}

/**
 * The record's bytes, in one buffer from Node's pool (Buffer.allocUnsafe: no zero fill, no
 * ArrayBuffer of its own under 4 KiB; every byte is written below). Account ids and body keys
 * are ASCII (validated before they get here), written a char code each: no TextEncoder call.
 */
export function encodeRecord(r: MailboxRecord): Uint8Array {
  const account = r.senderAccountId;
  const tailLength = r.bodyKey !== undefined ? r.bodyKey.length : (r.body?.length ?? 0);
  const out = Buffer.allocUnsafe(2 + 16 + 8 + 1 + account.length + 4 + 4 + r.entry.length + tailLength);
  let o = 0;
  out[o++] = VERSION;
  out[o++] = (r.ephemeral ? FLAG_EPHEMERAL : 0) | (r.bodyKey !== undefined ? FLAG_BODY_REF : 0) | (r.sealed ? FLAG_SEALED : 0);
  out.set(r.messageId, o);
  o += 16;
  // Two u32 halves: the same bytes as a u64 without a BigInt (times are below 2^53).
  out.writeUInt32BE(Math.floor(r.timestampMs / 0x100000000), o);
  out.writeUInt32BE(r.timestampMs >>> 0, o + 4);
  o += 8;
  out[o++] = account.length;
  o = writeAscii(out, account, o);
  out.writeUInt32BE(r.senderDeviceId, o);
  o += 4;
  out.writeUInt32BE(r.entry.length, o);
  o += 4;
  out.set(r.entry, o);
  o += r.entry.length;
  if (r.bodyKey !== undefined) writeAscii(out, r.bodyKey, o);
  else if (r.body) out.set(r.body, o);
  // A plain Uint8Array over the same bytes: what decodeRecord's views are (not Buffers).
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

function writeAscii(out: Uint8Array, s: string, at: number): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) throw new RecordFormatError("sender account ids and body keys are ASCII");
    out[at + i] = c;
  }
  return at + s.length;
}

export function decodeRecord(b: Uint8Array): MailboxRecord {
  if (b.length < 2 + 16 + 8 + 1 + 4 + 4 || b[0] !== VERSION) throw new RecordFormatError("not a mailbox record (version or length)");
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const flags = b[1];
  let o = 2;
  const messageId = b.subarray(o, o + 16);
  o += 16;
  // Two u32 halves, as encodeRecord writes them: no BigInt per record.
  const timestampMs = dv.getUint32(o) * 0x100000000 + dv.getUint32(o + 4);
  o += 8;
  const alen = b[o++];
  if (o + alen + 8 > b.length) throw new RecordFormatError("truncated mailbox record");
  const senderAccountId = unascii.decode(b.subarray(o, o + alen));
  o += alen;
  const senderDeviceId = dv.getUint32(o);
  o += 4;
  const elen = dv.getUint32(o);
  o += 4;
  if (o + elen > b.length) throw new RecordFormatError("truncated mailbox record entry");
  const entry = b.subarray(o, o + elen);
  o += elen;
  const tail = b.subarray(o);
  const ephemeral = (flags & FLAG_EPHEMERAL) !== 0;
  const sealed = (flags & FLAG_SEALED) !== 0;
  // Whole literals, not a spread of a common part: a spread plus one more field took V8's
  // slow define path for every record read (~1% of the server's CPU in a catch-up).
  if (flags & FLAG_BODY_REF) return { messageId, senderAccountId, senderDeviceId, timestampMs, entry, ephemeral, sealed, bodyKey: unascii.decode(tail) };
  return { messageId, senderAccountId, senderDeviceId, timestampMs, entry, ephemeral, sealed, body: tail };
}
