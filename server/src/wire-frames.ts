/**
 * What the server writes by hand outside connect-node (the pre-auth gate, the native delivery
 * path, the decode-failure rewrite): Connect/gRPC/gRPC-Web envelopes, and the headers other
 * layers (CORS) set on a compat response, for a `stream.respond()` under it (the gate's
 * trailers-only refusal).
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";

/** One envelope: flags (0 message, 0x02 Connect end-stream, 0x80 gRPC-Web trailers), u32be length, payload. */
export function envelope(flags: number, payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + payload.length);
  b[0] = flags;
  b.writeUInt32BE(payload.length, 1);
  b.set(payload, 5);
  return b;
}

/** Headers already set on the compat response (CORS), carried over to a respond() on its stream. */
export function headersSetOn(res: http.ServerResponse | http2.Http2ServerResponse): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of res.getHeaderNames()) out[name] = String(res.getHeader(name));
  return out;
}
