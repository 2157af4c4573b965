/**
 * The one request every routed message is, decoded by hand: a SendRequest (unary Send) and a
 * Session's SessionRequest carrying one. protobuf-es's reflective fromBinary builds the same
 * objects at several times the cost and garbage. These decoders take the fields in any order
 * (last wins for a scalar, as protobuf decoding does) and give up, returning undefined, on
 * anything else: an unknown field, an unexpected wire type, a singular message field seen
 * twice (protobuf merges those), a non-ASCII string, a varint beyond 2^49, truncated input,
 * or any other Session request than a send. The caller then decodes with fromBinary, whose
 * result or error is the answer, so both paths give exactly the same result
 * (send-request-decoding.test.ts compares them on random and mangled inputs).
 */
import type { DescMessage } from "@bufbuild/protobuf";
import {
  SendRequestSchema,
  SessionRequestSchema,
  type AccountVersion,
  type SendEntry,
  type SendRequest,
  type SessionRequest,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { DeviceAddress } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";

const VARINT = 0;
const LEN = 2;
/** Shared by every field left empty: protobuf-es gives each message its own, but nothing writes into them. */
const EMPTY: Uint8Array = new Uint8Array(0);

/** A cursor over one message's bytes; every read returns undefined (give up) instead of throwing. */
class Cursor {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint below 2^49 (seven bytes) as a number, or undefined. */
  varint(): number | undefined {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= this.end) return undefined;
      const byte = this.b[this.pos++];
      v += (byte & 0x7f) * scale;
      if (byte < 0x80) return v;
      scale *= 128;
    }
    return undefined;
  }

  /** A length-delimited field's extent: [start, end) inside this message, or undefined. */
  span(): number | undefined {
    const len = this.varint();
    if (len === undefined || len > this.end - this.pos) return undefined;
    const start = this.pos;
    this.pos += len;
    return start;
  }

  bytes(): Uint8Array | undefined {
    const start = this.span();
    return start === undefined ? undefined : this.b.subarray(start, this.pos);
  }

  /** An ASCII string (account ids are); anything else is left to fromBinary's UTF-8 check. */
  ascii(): string | undefined {
    const start = this.span();
    if (start === undefined) return undefined;
    let s = "";
    for (let i = start; i < this.pos; i++) {
      const c = this.b[i];
      if (c > 0x7f) return undefined;
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** The cursor of a nested message just read as a length-delimited field. */
  nested(): Cursor | undefined {
    const start = this.span();
    return start === undefined ? undefined : new Cursor(this.b, start, this.pos);
  }
}

function deviceAddress(c: Cursor): DeviceAddress | undefined {
  let accountId = "";
  let deviceId = 0;
  while (c.pos < c.end) {
    const tag = c.varint();
    if (tag === 8 * 1 + LEN) {
      const s = c.ascii();
      if (s === undefined) return undefined;
      accountId = s;
    } else if (tag === 8 * 2 + VARINT) {
      const v = c.varint();
      if (v === undefined || v > 0xffffffff) return undefined;
      deviceId = v;
    } else return undefined;
  }
  return { $typeName: "sealpost.directory.v1.DeviceAddress", accountId, deviceId };
}

function sendEntry(c: Cursor): SendEntry | undefined {
  let device: DeviceAddress | undefined;
  let entry = EMPTY;
  while (c.pos < c.end) {
    const tag = c.varint();
    if (tag === 8 * 1 + LEN) {
      const n = c.nested();
      if (!n || device) return undefined;
      device = deviceAddress(n);
      if (!device) return undefined;
    } else if (tag === 8 * 2 + LEN) {
      const b = c.bytes();
      if (!b) return undefined;
      entry = b;
    } else return undefined;
  }
  return { $typeName: "sealpost.delivery.v1.SendEntry", device, entry };
}

function accountVersion(c: Cursor): AccountVersion | undefined {
  let accountId = "";
  let deviceListVersion = 0n;
  while (c.pos < c.end) {
    const tag = c.varint();
    if (tag === 8 * 1 + LEN) {
      const s = c.ascii();
      if (s === undefined) return undefined;
      accountId = s;
    } else if (tag === 8 * 2 + VARINT) {
      const v = c.varint();
      if (v === undefined) return undefined;
      deviceListVersion = BigInt(v);
    } else return undefined;
  }
  return { $typeName: "sealpost.delivery.v1.AccountVersion", accountId, deviceListVersion };
}

/** A bool as protobuf writes it (one byte); a longer varint is left to fromBinary. */
function bool(c: Cursor): boolean | undefined {
  if (c.pos >= c.end || c.b[c.pos] > 1) return undefined;
  return c.b[c.pos++] === 1;
}

function sendRequest(c: Cursor): SendRequest | undefined {
  let messageId = EMPTY;
  let sharedBody = EMPTY;
  const entries: SendEntry[] = [];
  const versions: AccountVersion[] = [];
  let ephemeral = false;
  let retry = false;
  while (c.pos < c.end) {
    const tag = c.varint();
    switch (tag) {
      case 8 * 1 + LEN: {
        const b = c.bytes();
        if (!b) return undefined;
        messageId = b;
        break;
      }
      case 8 * 2 + LEN: {
        const b = c.bytes();
        if (!b) return undefined;
        sharedBody = b;
        break;
      }
      case 8 * 3 + LEN: {
        const n = c.nested();
        const e = n && sendEntry(n);
        if (!e) return undefined;
        entries.push(e);
        break;
      }
      case 8 * 4 + LEN: {
        const n = c.nested();
        const v = n && accountVersion(n);
        if (!v) return undefined;
        versions.push(v);
        break;
      }
      case 8 * 5 + VARINT: {
        const v = bool(c);
        if (v === undefined) return undefined;
        ephemeral = v;
        break;
      }
      case 8 * 6 + VARINT: {
        const v = bool(c);
        if (v === undefined) return undefined;
        retry = v;
        break;
      }
      default:
        return undefined;
    }
  }
  return { $typeName: "sealpost.delivery.v1.SendRequest", messageId, sharedBody, entries, versions, ephemeral, retry };
}

/** A SendRequest, or undefined: decode it with fromBinary. */
export function decodeSendRequest(b: Uint8Array): SendRequest | undefined {
  return sendRequest(new Cursor(b, 0, b.length));
}

/** A SessionRequest carrying a send, or undefined: decode it with fromBinary. */
export function decodeSessionSend(b: Uint8Array): SessionRequest | undefined {
  const c = new Cursor(b, 0, b.length);
  // One field: send (1). Twice, or anything else (ack, receive), goes to fromBinary.
  if (c.varint() !== 8 * 1 + LEN) return undefined;
  const send = c.nested();
  if (!send || c.pos !== c.end) return undefined;
  let id = 0n;
  let request: SendRequest | undefined;
  while (send.pos < send.end) {
    const tag = send.varint();
    if (tag === 8 * 1 + VARINT) {
      const v = send.varint();
      if (v === undefined) return undefined;
      id = BigInt(v);
    } else if (tag === 8 * 2 + LEN) {
      const n = send.nested();
      if (!n || request) return undefined;
      request = sendRequest(n);
      if (!request) return undefined;
    } else return undefined;
  }
  return {
    $typeName: "sealpost.delivery.v1.SessionRequest",
    kind: { case: "send", value: { $typeName: "sealpost.delivery.v1.SessionSend", id, request } },
  };
}

/** The hand decoders by schema (native-wire.ts decodeMessage tries these before fromBinary). */
export const quickDecoders = new Map<DescMessage, (b: Uint8Array) => unknown>([
  [SendRequestSchema, decodeSendRequest],
  [SessionRequestSchema, decodeSessionSend],
]);
