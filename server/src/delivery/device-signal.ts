/**
 * Core-NATS signals to one device's live Receive stream, on notifySubject(account, device).
 * One subject per device carries every kind, so a stream holds exactly one subscription.
 * Signals are hints: losing one delays a stream until its periodic re-check, never loses mail.
 *
 *   0x01 mail      new mail was stored for the device; optionally its u64 sequence (a
 *                  stream at the head of its mailbox fetches exactly that message)
 *   0x02 ephemeral a mailbox record (typing) for connected streams only
 *   0x03 acked     u64 sequences that were acked (frees flow-control window)
 *   0x04 takeover  u64 order, then the new stream's id: older streams end with Replaced
 *   0x05 revoked   the device was revoked: streams end
 *   0x06 acking    u64 sequences an Ack served on another instance is about to delete (sent,
 *                  and seen by nats-server, before the delete; "acked" follows after it)
 */
export type DeviceSignal =
  | { kind: "mail"; seq?: number }
  | { kind: "ephemeral"; record: Uint8Array }
  | { kind: "acked"; sequences: number[] }
  | { kind: "acking"; sequences: number[] }
  | { kind: "takeover"; order: number; streamId: string }
  | { kind: "revoked" };

const MAIL = 1;
const EPHEMERAL = 2;
const ACKED = 3;
const TAKEOVER = 4;
const REVOKED = 5;
const ACKING = 6;

const MAIL_BYTES = Uint8Array.of(MAIL);
const REVOKED_BYTES = Uint8Array.of(REVOKED);

export function encodeSignal(s: DeviceSignal): Uint8Array {
  switch (s.kind) {
    case "mail": {
      if (s.seq === undefined) return MAIL_BYTES;
      const out = new Uint8Array(9);
      out[0] = MAIL;
      new DataView(out.buffer).setBigUint64(1, BigInt(s.seq));
      return out;
    }
    case "revoked":
      return REVOKED_BYTES;
    case "ephemeral": {
      const out = new Uint8Array(1 + s.record.length);
      out[0] = EPHEMERAL;
      out.set(s.record, 1);
      return out;
    }
    case "acked":
    case "acking": {
      const out = new Uint8Array(1 + 8 * s.sequences.length);
      out[0] = s.kind === "acked" ? ACKED : ACKING;
      const dv = new DataView(out.buffer);
      s.sequences.forEach((q, i) => dv.setBigUint64(1 + 8 * i, BigInt(q)));
      return out;
    }
    case "takeover": {
      const id = new TextEncoder().encode(s.streamId);
      const out = new Uint8Array(9 + id.length);
      out[0] = TAKEOVER;
      new DataView(out.buffer).setBigUint64(1, BigInt(s.order));
      out.set(id, 9);
      return out;
    }
  }
}

/** Undefined for bytes that are no signal (ignored: hints are best effort). */
export function decodeSignal(b: Uint8Array): DeviceSignal | undefined {
  if (b.length === 0) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (b[0]) {
    case MAIL:
      if (b.length < 9) return { kind: "mail" };
      return { kind: "mail", seq: Number(dv.getBigUint64(1)) };
    case REVOKED:
      return { kind: "revoked" };
    case EPHEMERAL:
      return { kind: "ephemeral", record: b.subarray(1) };
    case ACKED:
    case ACKING: {
      const n = Math.floor((b.length - 1) / 8);
      const sequences = new Array<number>(n);
      for (let i = 0; i < n; i++) sequences[i] = Number(dv.getBigUint64(1 + 8 * i));
      return { kind: b[0] === ACKED ? "acked" : "acking", sequences };
    }
    case TAKEOVER:
      if (b.length < 9) return undefined;
      return { kind: "takeover", order: Number(dv.getBigUint64(1)), streamId: new TextDecoder().decode(b.subarray(9)) };
    default:
      return undefined;
  }
}
