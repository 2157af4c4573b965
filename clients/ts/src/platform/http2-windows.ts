/**
 * HTTP/2 receive windows for the Node transport. HTTP/2 opens every stream and the connection
 * with a 64 KiB window: the server may send that much and then waits for the client's
 * WINDOW_UPDATE. A device's mail comes on one stream (Receive or Session), so with the
 * defaults it arrives at most 64 KiB (about 50 messages of 1 KiB) per round trip of the
 * client's window updates, however fast the server and the network are; a client busy in
 * other work (sending) sends its updates late. The server bench measured deliveries held to
 * half the Sends accepted by it (1,024 Sends in flight, one process sending and receiving).
 * Wider windows let the server push as fast as the client reads. They cost no memory until
 * used: what the server sent and the client has not read yet is bounded by them.
 */
import type * as http2 from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/** Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE): above a maximal message (a 256 KiB body with its entries). */
export const STREAM_WINDOW_BYTES = 1024 * 1024;
/** The connection's receive window, shared by its streams (raised with a WINDOW_UPDATE once connected). */
export const CONNECTION_WINDOW_BYTES = 8 * 1024 * 1024;

/** connect-node's session manager, with every connection it opens given the windows above. */
class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.Http2Session>();

  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session;
    // The connection window can only be raised once connected; the first request on it does.
    if (session && !this.widened.has(session) && !session.destroyed) {
      this.widened.add(session);
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    }
    return stream;
  }
}

/** A session manager for createConnectTransport({ httpVersion: "2" }) that opens its connections with wide receive windows. */
export function wideWindowSessionManager(baseUrl: string): Http2SessionManager {
  return new WideWindowSessionManager(baseUrl, undefined, { settings: { initialWindowSize: STREAM_WINDOW_BYTES } });
}
