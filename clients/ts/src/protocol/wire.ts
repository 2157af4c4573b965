/**
 * Hand-written protobuf encoders for the hot-path envelope messages (DeviceEnvelope,
 * EntryPayload, SharedBody with a SealedBody or a SenderKeyMessage, and a text Content). They write exactly the bytes protobuf-es `toBinary` writes
 * (fields in number order, proto3 defaults omitted; tested against it in
 * clients/ts/test/wire.test.ts) at a fraction of the cost: one exact-size allocation, no
 * message objects. Their decoders are in canonical-decoding.ts (canonical bytes only; the
 * rest goes to protobuf-es `fromBinary`, which accepts every valid encoding).
 */
import { toBinary } from "@bufbuild/protobuf";
import { type Content, ContentSchema, ConversationSchema, type Text, TextSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { SignedTreeHeadSchema } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import type { DeviceRef } from "./address.js";
import { utf8, withUtf8 } from "../crypto/bytes.js";
import { paddedBuffer } from "./padding.js";
import { transientBytes } from "../util/transient-bytes.js";
import { SENDER_KEY_VERSION } from "./group-labels.js";

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

class Writer {
  readonly buf: Uint8Array;
  pos = 0;
  /** Writes from the start of `alloc(size)` (a plain new buffer unless the caller says otherwise). */
  constructor(size: number, alloc: (size: number) => Uint8Array = (n) => new Uint8Array(n)) {
    this.buf = alloc(size);
  }
  varint(n: number): void {
    while (n >= 128) {
      this.buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }
  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }
  /** uint32/uint64 field; `always` for proto3 `optional` fields (explicit presence). */
  uint(field: number, n: number, always = false): void {
    if (n === 0 && !always) return;
    this.tag(field, WIRE_VARINT);
    this.varint(n);
  }
  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.tag(field, WIRE_LEN);
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  /** Header of an embedded message of `length` bytes (written even when empty). */
  message(field: number, length: number): void {
    this.tag(field, WIRE_LEN);
    this.varint(length);
  }
  /** A length-delimited field written even when empty (oneof members, embedded messages). */
  present(field: number, b: Uint8Array): void {
    this.message(field, b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

// Every field number here is below 16, so every tag is one byte.
const uintSize = (n: number, always = false) => (n === 0 && !always ? 0 : 1 + varintSize(n));
const bytesSize = (len: number) => (len === 0 ? 0 : 1 + varintSize(len) + len);
const messageSize = (len: number) => 1 + varintSize(len) + len;

/** Fields of a RatchetMessage (the KEM fields: version 2 only). */
export interface RatchetFields {
  version: number;
  ratchetKey: Uint8Array;
  previousChainLength: number;
  counter: number;
  ciphertext: Uint8Array;
  kemPublicKey?: Uint8Array;
  kemPublicKeyId?: number;
  kemCiphertext?: Uint8Array;
  kemCiphertextKeyId?: number;
}

/** Fields of a PrekeyMessage (around its RatchetMessage). */
export interface PrekeyFields {
  version: number;
  identityDhKey: Uint8Array;
  baseKey: Uint8Array;
  signedPrekeyId: number;
  oneTimePrekeyId?: number;
  kemPrekeyId: number;
  kemCiphertext: Uint8Array;
}

function ratchetSize(m: Omit<RatchetFields, "ciphertext">, ciphertextLength: number): number {
  return (
    uintSize(m.version) +
    bytesSize(m.ratchetKey.length) +
    uintSize(m.previousChainLength) +
    uintSize(m.counter) +
    bytesSize(ciphertextLength) +
    bytesSize(m.kemPublicKey?.length ?? 0) +
    uintSize(m.kemPublicKeyId ?? 0) +
    bytesSize(m.kemCiphertext?.length ?? 0) +
    uintSize(m.kemCiphertextKeyId ?? 0)
  );
}

function writeRatchet(w: Writer, m: RatchetFields): void {
  w.uint(1, m.version);
  w.bytes(2, m.ratchetKey);
  w.uint(3, m.previousChainLength);
  w.uint(4, m.counter);
  w.bytes(5, m.ciphertext);
  if (m.kemPublicKey) w.bytes(6, m.kemPublicKey);
  w.uint(7, m.kemPublicKeyId ?? 0);
  if (m.kemCiphertext) w.bytes(8, m.kemCiphertext);
  w.uint(9, m.kemCiphertextKeyId ?? 0);
}

function prekeySize(prekey: PrekeyFields, rSize: number): number {
  return (
    uintSize(prekey.version) +
    bytesSize(prekey.identityDhKey.length) +
    bytesSize(prekey.baseKey.length) +
    uintSize(prekey.signedPrekeyId) +
    (prekey.oneTimePrekeyId === undefined ? 0 : uintSize(prekey.oneTimePrekeyId, true)) +
    uintSize(prekey.kemPrekeyId) +
    bytesSize(prekey.kemCiphertext.length) +
    messageSize(rSize)
  );
}

/** The size of the DeviceEnvelope encodeDeviceEnvelope writes, before its ciphertext exists. */
export function deviceEnvelopeSize(ratchet: Omit<RatchetFields, "ciphertext">, ciphertextLength: number, prekey?: PrekeyFields): number {
  const rSize = ratchetSize(ratchet, ciphertextLength);
  return messageSize(prekey ? prekeySize(prekey, rSize) : rSize);
}

/** A serialized DeviceEnvelope: `ratchet` alone, or `prekey` wrapping it. */
export function encodeDeviceEnvelope(ratchet: RatchetFields, prekey?: PrekeyFields): Uint8Array {
  const rSize = ratchetSize(ratchet, ratchet.ciphertext.length);
  if (!prekey) {
    const w = new Writer(messageSize(rSize));
    w.message(2, rSize);
    writeRatchet(w, ratchet);
    return w.buf;
  }
  const pSize = prekeySize(prekey, rSize);
  const w = new Writer(messageSize(pSize));
  w.message(1, pSize);
  w.uint(1, prekey.version);
  w.bytes(2, prekey.identityDhKey);
  w.bytes(3, prekey.baseKey);
  w.uint(4, prekey.signedPrekeyId);
  if (prekey.oneTimePrekeyId !== undefined) w.uint(5, prekey.oneTimePrekeyId, true);
  w.uint(6, prekey.kemPrekeyId);
  w.bytes(7, prekey.kemCiphertext);
  w.message(8, rSize);
  writeRatchet(w, ratchet);
  return w.buf;
}

/** Fields of an EntryPayload. */
export interface EntryFields {
  sender: DeviceRef;
  recipient: DeviceRef;
  channelSequence: number;
  contentKey: Uint8Array;
  bodySha256: Uint8Array;
  messageId: Uint8Array;
  /** Inline content (padded serialized Content); then contentKey and bodySha256 are empty. */
  content?: Uint8Array;
}

/** Account ids an entry names, as UTF-8 (read only: the Writer copies them). */
const ACCOUNT_BYTES_CACHE = 1024;
const accountBytesCache = new Map<string, Uint8Array>();
/**
 * TextEncoder.encode costs ~1 us even for a short string in Node (a new ArrayBuffer), and a
 * device writes to the same few accounts again and again.
 */
function accountBytes(accountId: string): Uint8Array {
  let b = accountBytesCache.get(accountId);
  if (!b) {
    if (accountBytesCache.size >= ACCOUNT_BYTES_CACHE) accountBytesCache.clear();
    accountBytesCache.set(accountId, (b = utf8(accountId)));
  }
  return b;
}

function addressSize(accountBytes: Uint8Array, deviceId: number): number {
  return bytesSize(accountBytes.length) + uintSize(deviceId);
}

/** The size of the EntryPayload encodeEntryPayload writes. */
export function entryPayloadSize(e: EntryFields): number {
  return payloadSize(
    e,
    addressSize(accountBytes(e.sender.accountId), e.sender.deviceId),
    addressSize(accountBytes(e.recipient.accountId), e.recipient.deviceId),
  );
}

function payloadSize(e: EntryFields, senderSize: number, recipientSize: number): number {
  return (
    messageSize(senderSize) +
    messageSize(recipientSize) +
    uintSize(e.channelSequence) +
    bytesSize(e.contentKey.length) +
    bytesSize(e.bodySha256.length) +
    bytesSize(e.messageId.length) +
    bytesSize(e.content?.length ?? 0)
  );
}

/** A serialized EntryPayload (transient, util/transient-bytes.ts: encrypt it, wipe it). */
export function encodeEntryPayload(e: EntryFields): Uint8Array {
  const senderAccount = accountBytes(e.sender.accountId);
  const recipientAccount = accountBytes(e.recipient.accountId);
  const senderSize = addressSize(senderAccount, e.sender.deviceId);
  const recipientSize = addressSize(recipientAccount, e.recipient.deviceId);
  const size = payloadSize(e, senderSize, recipientSize);
  // Transient plaintext (it carries the content key): encrypted, then wiped.
  const w = new Writer(size, transientBytes);
  w.message(1, senderSize);
  w.bytes(1, senderAccount);
  w.uint(2, e.sender.deviceId);
  w.message(2, recipientSize);
  w.bytes(1, recipientAccount);
  w.uint(2, e.recipient.deviceId);
  w.uint(3, e.channelSequence);
  w.bytes(4, e.contentKey);
  w.bytes(5, e.bodySha256);
  w.bytes(6, e.messageId);
  if (e.content) w.bytes(7, e.content);
  return w.buf;
}

/** A serialized SharedBody holding a SealedBody. */
export function encodeSealedSharedBody(version: number, ciphertext: Uint8Array): Uint8Array {
  const inner = uintSize(version) + bytesSize(ciphertext.length);
  const w = new Writer(messageSize(inner));
  w.message(1, inner);
  w.uint(1, version);
  w.bytes(2, ciphertext);
  return w.buf;
}

/**
 * A serialized SharedBody holding a SenderKeyMessage (version SENDER_KEY_VERSION); checked
 * against protobuf-es in groups-sender-keys.test.ts.
 */
export function encodeSenderKeySharedBody(
  distributionId: Uint8Array,
  chainId: number,
  iteration: number,
  ciphertext: Uint8Array,
  signature: Uint8Array,
): Uint8Array {
  const inner =
    uintSize(SENDER_KEY_VERSION) +
    bytesSize(distributionId.length) +
    uintSize(chainId) +
    uintSize(iteration) +
    bytesSize(ciphertext.length) +
    bytesSize(signature.length);
  const w = new Writer(messageSize(inner));
  w.message(2, inner);
  w.uint(1, SENDER_KEY_VERSION);
  w.bytes(2, distributionId);
  w.uint(3, chainId);
  w.uint(4, iteration);
  w.bytes(5, ciphertext);
  w.bytes(6, signature);
  return w.buf;
}

/**
 * The field numbers encodeTextContent was written for. A field added to the schema later
 * turns the fast path off (everything goes through protobuf-es) instead of being dropped.
 */
const fieldNumbers = (schema: { fields: { number: number }[] }) => schema.fields.map((f) => f.number).join(",");
export const TEXT_CONTENT_SCHEMA_KNOWN =
  fieldNumbers(ContentSchema) === "1,2,3,4,5,6,7,8,9,10,11,12" && fieldNumbers(TextSchema) === "1,2" && fieldNumbers(ConversationSchema) === "1,2";

/**
 * A serialized text Content with message_id set to `messageId` when it is empty, or
 * undefined when `content` is anything else (another body, unknown fields, a negative or
 * huge sent_at_ms): callers then use protobuf-es. protobuf-es grows its writer from 128
 * bytes by doubling and copies the result (~10 us for 1 KiB of text, a tenth of a 1:1
 * message's cost); this sizes the output once. `padded`: the output is the padded
 * plaintext (padding.ts), written in place.
 */
export function encodeTextContent(content: Content, messageId: Uint8Array, padded = false): Uint8Array | undefined {
  if (!TEXT_CONTENT_SCHEMA_KNOWN || content.body.case !== "text" || content.$unknown?.length || content.body.value.$unknown?.length) return undefined;
  if (content.conversation?.$unknown?.length) return undefined;
  if (content.sentAtMs < 0n || content.sentAtMs > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return withUtf8(content.body.value.body, (body) => writeTextContent(content, messageId, body, padded));
}

/** encodeTextContent once the text's UTF-8 bytes are known (`body`). */
function writeTextContent(content: Content, messageId: Uint8Array, body: Uint8Array, padded: boolean): Uint8Array {
  const conversation = content.conversation;
  const sentAtMs = Number(content.sentAtMs);
  const id = content.messageId.length > 0 ? content.messageId : messageId;
  const text = content.body.value as Text;
  const textSize = bytesSize(body.length) + bytesSize(text.quoteMessageId.length);
  const kind = conversation?.kind;
  const kindBytes = kind?.case === "accountId" ? utf8(kind.value) : kind?.case === "groupId" ? kind.value : undefined;
  const conversationSize = kindBytes ? messageSize(kindBytes.length) : 0;
  const logHead = content.logHead ? toBinary(SignedTreeHeadSchema, content.logHead) : undefined;
  const size =
    bytesSize(id.length) +
    uintSize(sentAtMs) +
    (conversation ? messageSize(conversationSize) : 0) +
    messageSize(textSize) +
    bytesSize(content.senderAccessKey.length) +
    (logHead ? messageSize(logHead.length) : 0);
  const w = new Writer(size, padded ? paddedBuffer : undefined);
  w.bytes(1, id);
  w.uint(2, sentAtMs);
  if (conversation) {
    w.message(3, conversationSize);
    if (kindBytes) w.present(kind?.case === "accountId" ? 1 : 2, kindBytes);
  }
  w.message(4, textSize);
  w.bytes(1, body);
  w.bytes(2, text.quoteMessageId);
  w.bytes(11, content.senderAccessKey);
  if (logHead) w.present(12, logHead);
  return w.buf;
}
