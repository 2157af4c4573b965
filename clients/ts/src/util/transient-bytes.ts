/**
 * Zeroed byte buffers for data that stays inside the SDK and dies within one operation:
 * plaintext on its way into an AEAD (wiped after), associated data. A new ArrayBuffer
 * above 64 bytes costs ~2.5 us in Node (its backing store lives outside the JS heap, and
 * the garbage collector tracks each one); these are carved from a shared 16 KiB slab
 * instead (~0.1 us), a fresh slab when one is used up, slices never handed out twice.
 *
 * A slice's `.buffer` is the slab, holding other slices: never return one to a caller,
 * store it, or post it (structured clone copies the whole ArrayBuffer). Read it through its
 * view (byteOffset/byteLength), as every primitive here does.
 */
const SLAB_BYTES = 16_384;
/** Larger requests get their own ArrayBuffer (a slab would hold few of them). */
const MAX_SLICE_BYTES = 4_096;

let slab = new Uint8Array(SLAB_BYTES);
let used = 0;

export function transientBytes(length: number): Uint8Array {
  if (length > MAX_SLICE_BYTES) return new Uint8Array(length);
  if (used + length > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    used = 0;
  }
  const out = slab.subarray(used, used + length);
  // 8-byte steps keep each slice aligned for a DataView.
  used += (length + 7) & ~7;
  return out;
}
