/**
 * Transient buffers come from shared slabs: each slice is zeroed, never overlaps a slice
 * handed out before it (also across a slab change), starts 8-byte aligned, and large
 * requests get an ArrayBuffer of their own.
 */
import { describe, expect, it } from "vitest";
import { transientBytes } from "../src/util/transient-bytes.js";

describe("transientBytes", () => {
  it("hands out zeroed, disjoint, aligned slices; a full slab is replaced, never reused", () => {
    const live: Uint8Array[] = [];
    for (let i = 0; i < 400; i++) {
      const n = 1 + ((i * 977) % 1500);
      const b = transientBytes(n);
      expect(b.length).toBe(n);
      expect(b.byteOffset % 8).toBe(0);
      expect(b.every((x) => x === 0)).toBe(true);
      b.fill((i % 255) + 1);
      live.push(b);
    }
    // Every earlier slice still holds what was written into it.
    live.forEach((b, i) => expect(b.every((x) => x === (i % 255) + 1)).toBe(true));
    expect(new Set(live.map((b) => b.buffer)).size).toBeGreaterThan(1);
  });

  it("gives a large request a buffer of its own", () => {
    const big = transientBytes(10_000);
    expect(big.byteOffset).toBe(0);
    expect(big.buffer.byteLength).toBe(10_000);
  });
});
