/**
 * A deterministic byte stream for tests and conformance vectors ONLY (never for real keys):
 * block i = SHA-256("sealpost.test-random.v1" || seed || u32be(i)), concatenated.
 * Pure noble, so both providers draw exactly the same bytes.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { concatBytes, u32be, utf8 } from "./bytes.js";
import type { RandomSource } from "./provider.js";

export function createDeterministicRandom(seed: string | Uint8Array): RandomSource {
  const seedBytes = typeof seed === "string" ? utf8(seed) : seed;
  const label = utf8("sealpost.test-random.v1");
  let counter = 0;
  let buffer: Uint8Array = new Uint8Array(0);
  return (n: number) => {
    while (buffer.length < n) {
      buffer = concatBytes(buffer, sha256(concatBytes(label, seedBytes, u32be(counter++))));
    }
    const out = buffer.slice(0, n);
    buffer = buffer.slice(n);
    return out;
  };
}
