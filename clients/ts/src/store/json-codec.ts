/**
 * JSON encoding of store records: Uint8Array becomes {"$b": "<base64>"}; everything else is
 * plain JSON (records hold no Maps, bigints or Dates).
 */
export function encodeRecord(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v instanceof Uint8Array ? { $b: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") } : v,
  );
}

export function decodeRecord<T>(text: string): T {
  return JSON.parse(text, (_key, v: unknown) => {
    if (v !== null && typeof v === "object" && "$b" in v && typeof (v as { $b: unknown }).$b === "string") {
      return new Uint8Array(Buffer.from((v as { $b: string }).$b, "base64"));
    }
    return v;
  }) as T;
}
