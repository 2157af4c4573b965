/**
 * The harness framing: each message is a u32 big-endian length, then that many bytes
 * (proto/sealpost/conformance/v1/client_harness.proto). A reader for a byte stream and a
 * frame encoder; shared by the runner and the TypeScript client under test.
 */
import type { Readable } from "node:stream";

export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export function encodeFrame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

/** Yields each frame's payload; ends when the stream ends (a partial frame is an error). */
export async function* readFrames(input: Readable): AsyncGenerator<Uint8Array> {
  let buf = Buffer.alloc(0);
  for await (const chunk of input) {
    buf = Buffer.concat([buf, chunk as Buffer]);
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (len > MAX_FRAME_BYTES) throw new Error(`frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`);
      if (buf.length < 4 + len) break;
      yield new Uint8Array(buf.subarray(4, 4 + len));
      buf = buf.subarray(4 + len);
    }
  }
  if (buf.length > 0) throw new Error(`stream ended inside a frame (${buf.length} bytes left)`);
}
