/**
 * JSON encoding of store records: Uint8Array becomes {"$b": "<base64>"}; everything else is
 * plain JSON (records hold no Maps, bigints or Dates).
 */
import { fromBase64, toBase64 } from "../crypto/bytes.js";

export function encodeRecord(value: unknown): string {
  // Read the raw property (this[key]): JSON.stringify applies toJSON before the replacer, and
  // a Node Buffer (what protobuf-es decodes to from connect-node responses) would otherwise
  // arrive as {type: "Buffer", data: [...]} and decode as a plain object.
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    return raw instanceof Uint8Array ? { $b: toBase64(raw) } : v;
  });
}

export function decodeRecord<T>(text: string): T {
  return JSON.parse(text, (_key, v: unknown) => {
    if (v !== null && typeof v === "object" && "$b" in v && typeof (v as { $b: unknown }).$b === "string") {
      return fromBase64((v as { $b: string }).$b);
    }
    return v;
  }) as T;
}
