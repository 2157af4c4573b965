/**
 * A few plain node:http2 client connections to one server, handed out round robin: what the
 * lean bench clients (raw-unary.ts, session-load.ts) speak Connect over. connect-node's
 * client costs far more CPU per call or message than the server path it measures, and on
 * this 2-core box the load generator shares the cores with the server and nats-server.
 */
import * as http2 from "node:http2";

export class Http2Pool {
  private readonly sessions: http2.ClientHttp2Session[];
  private i = 0;

  constructor(baseUrl: string, count: number) {
    this.sessions = Array.from({ length: count }, () => {
      const s = http2.connect(baseUrl);
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
