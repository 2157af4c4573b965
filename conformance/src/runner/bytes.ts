/** Byte helpers shared by the value language and the matcher. */

export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

export function toBase64(b: Uint8Array): string {
  return Buffer.from(b).toString("base64");
}

/** Proto3 JSON accepts standard and URL-safe base64, padded or not. */
export function fromBase64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64"));
}

/** Bytes given directly, or a base64 string (as found in a bound response). */
export function asBytes(v: unknown, what: string): Uint8Array {
  if (isBytes(v)) return v;
  if (typeof v === "string") return fromBase64(v);
  throw new Error(`${what}: expected bytes or a base64 string, got ${JSON.stringify(v)}`);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

export function u32be(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
