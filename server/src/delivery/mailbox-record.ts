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
const ascii = new TextEncoder();
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

export function encodeRecord(r: MailboxRecord): Uint8Array {
  const account = ascii.encode(r.senderAccountId);
  const tail = r.bodyKey !== undefined ? ascii.encode(r.bodyKey) : (r.body ?? new Uint8Array(0));
  const out = new Uint8Array(2 + 16 + 8 + 1 + account.length + 4 + 4 + r.entry.length + tail.length);
  const dv = new DataView(out.buffer);
  let o = 0;
  out[o++] = VERSION;
  out[o++] = (r.ephemeral ? FLAG_EPHEMERAL : 0) | (r.bodyKey !== undefined ? FLAG_BODY_REF : 0) | (r.sealed ? FLAG_SEALED : 0);
  out.set(r.messageId, o);
  o += 16;
  dv.setBigUint64(o, BigInt(r.timestampMs));
  o += 8;
  out[o++] = account.length;
  out.set(account, o);
  o += account.length;
  dv.setUint32(o, r.senderDeviceId);
  o += 4;
  dv.setUint32(o, r.entry.length);
  o += 4;
  out.set(r.entry, o);
  o += r.entry.length;
  out.set(tail, o);
  return out;
}

export function decodeRecord(b: Uint8Array): MailboxRecord {
  if (b.length < 2 + 16 + 8 + 1 + 4 + 4 || b[0] !== VERSION) throw new RecordFormatError("not a mailbox record (version or length)");
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const flags = b[1];
  let o = 2;
  const messageId = b.subarray(o, o + 16);
  o += 16;
  const timestampMs = Number(dv.getBigUint64(o));
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
  const base = {
    messageId,
    senderAccountId,
    senderDeviceId,
    timestampMs,
    entry,
    ephemeral: (flags & FLAG_EPHEMERAL) !== 0,
    sealed: (flags & FLAG_SEALED) !== 0,
  };
  return flags & FLAG_BODY_REF ? { ...base, bodyKey: unascii.decode(tail) } : { ...base, body: tail };
}
