/**
 * The headers of a reply from nats-server, read straight from the message's bytes. nats.js
 * decodes a header block into a map of arrays (every line split, each name canonicalized and
 * looked up again, each value checked by a regular expression); a catch-up reads a direct get
 * per message, each with five or six headers, and that decoding was ~6% of the server's CPU
 * during catch-up. A reply needs its status and one or two values: this keeps the block as
 * one string and finds a value when asked.
 *
 * The bytes come from nats.js's message object (MsgImpl keeps the raw payload and the header
 * length); a message without them (another implementation) falls back to `msg.headers`.
 * server/test/reply-headers.test.ts holds both readings to the same answers.
 */
import type { Msg } from "@nats-io/nats-core";

/** What readers use of a reply's headers: as nats.js's MsgHdrs, `get` answers "" for a missing name. */
export interface ReplyHeaders {
  /** The status code of the header line ("NATS/1.0 404 Message Not Found": 404), 0 for none. */
  readonly code: number;
  readonly description: string;
  get(name: string): string;
}

/** nats.js 3.x MsgImpl's fields: the payload with the header block first, and its length (-1: no headers). */
interface RawMsg {
  _rdata?: Uint8Array;
  _msg?: { hdr?: number };
}

const STATUS_PREFIX = "NATS/1.0";
const SPACE = 0x20;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/** The reply's headers, or undefined when it has none. */
export function replyHeaders(msg: Msg): ReplyHeaders | undefined {
  const raw = rawOf(msg);
  if (!raw) return msg.headers;
  if (raw.hdr <= 0) return undefined;
  return new HeaderBlock(Buffer.from(raw.bytes.buffer, raw.bytes.byteOffset, raw.hdr).toString("utf8"));
}

/** The status code alone (0: none), without decoding the block: every reply is checked for 503. */
export function replyStatus(msg: Msg): number {
  const raw = rawOf(msg);
  if (!raw) return msg.headers?.code ?? 0;
  const { bytes, hdr } = raw;
  let i = STATUS_PREFIX.length;
  while (i < hdr && bytes[i] === SPACE) i++;
  let code = 0;
  for (; i < hdr && bytes[i] >= DIGIT_0 && bytes[i] <= DIGIT_9; i++) code = code * 10 + bytes[i] - DIGIT_0;
  return code;
}

/** Whether `replyHeaders` and `replyStatus` read this message's bytes (nats.js internals as expected) rather than falling back. */
export function readsRawHeaders(msg: Msg): boolean {
  return rawOf(msg) !== undefined;
}

/** The payload (header block first) and the header block's length, where nats.js's MsgImpl has them. */
function rawOf(msg: Msg): { bytes: Uint8Array; hdr: number } | undefined {
  const raw = msg as unknown as RawMsg;
  const hdr = raw._msg?.hdr;
  return typeof hdr === "number" && raw._rdata instanceof Uint8Array ? { bytes: raw._rdata, hdr } : undefined;
}

class HeaderBlock implements ReplyHeaders {
  readonly code: number;
  readonly description: string;

  /** `text`: "NATS/1.0[ code[ description]]\r\nName: value\r\n...\r\n\r\n" (UTF-8, as nats.js decodes it). */
  constructor(private readonly text: string) {
    const eol = text.indexOf("\r\n");
    const status = (eol < 0 ? text : text.slice(0, eol)).slice(STATUS_PREFIX.length).trim();
    const space = status.indexOf(" ");
    const code = Number.parseInt(space < 0 ? status : status.slice(0, space), 10);
    this.code = Number.isNaN(code) ? 0 : code;
    this.description = space < 0 ? "" : status.slice(space + 1).trim();
  }

  /** The first value of `name` (exact, as nats.js matches by default), trimmed; "" when absent. */
  get(name: string): string {
    const key = `\r\n${name}:`;
    const at = this.text.indexOf(key);
    if (at < 0) return "";
    const from = at + key.length;
    const end = this.text.indexOf("\r\n", from);
    return this.text.slice(from, end < 0 ? undefined : end).trim();
  }
}
