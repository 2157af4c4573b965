/**
 * A few plain node:http2 client connections to one server, handed out round robin: what the
 * lean bench clients (raw-unary.ts, raw-receive.ts, session-load.ts) speak Connect over. connect-node's
 * client costs far more CPU per call or message than the server path it measures, and on
 * this 2-core box the load generator shares the cores with the server and nats-server.
 */
import * as http2 from "node:http2";
import { CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES } from "@sealpost/client/http2-windows";

export class Http2Pool {
  private readonly sessions: http2.ClientHttp2Session[];
  private i = 0;

  constructor(baseUrl: string, count: number) {
    this.sessions = Array.from({ length: count }, () => {
      // The receive windows clients/ts opens its connections with: with HTTP/2's 64 KiB the
      // server's pushes to the receivers wait for this busy process's window updates.
      const s = http2.connect(baseUrl, { settings: { initialWindowSize: STREAM_WINDOW_BYTES } });
      s.once("connect", () => s.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
      s.on("error", () => {}); // a call on it fails with the reason
      return s;
    });
  }

  next(): http2.ClientHttp2Session {
    return this.sessions[this.i++ % this.sessions.length];
  }

  at(k: number): http2.ClientHttp2Session {
    return this.sessions[k % this.sessions.length];
  }

  close(): void {
    for (const s of this.sessions) s.close();
  }
}

/** Connect's end-of-stream envelope flag (its payload is the trailing JSON). */
export const END_STREAM = 0x02;

/** One Connect envelope: a flags byte, a u32 length, the message. */
export function envelope(msg: Uint8Array): Buffer {
  const env = Buffer.allocUnsafe(5 + msg.length);
  env[0] = 0;
  env.writeUInt32BE(msg.length, 1);
  env.set(msg, 5);
  return env;
}

/**
 * Splits a Connect stream's bytes into envelopes as they arrive: `message` gets each
 * message, `end` the end-of-stream JSON.
 */
export class EnvelopeReader {
  private inbound: Buffer = Buffer.alloc(0);

  constructor(
    private readonly message: (payload: Buffer) => void,
    private readonly end: (json: string) => void,
  ) {}

  push(chunk: Buffer): void {
    let buf = this.inbound.length ? Buffer.concat([this.inbound, chunk]) : chunk;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      const flags = buf[0];
      const payload = buf.subarray(5, 5 + len);
      buf = buf.subarray(5 + len);
      if (flags & END_STREAM) this.end(payload.toString("utf8"));
      else this.message(payload);
    }
    this.inbound = buf;
  }
}
