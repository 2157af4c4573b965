/**
 * One port, three protocols (Connect, gRPC, gRPC-Web) over HTTP/1.1 and h2c.
 *
 * Node's http2.createServer({ allowHTTP1 }) only falls back to HTTP/1.1 with TLS (ALPN). In
 * clear text we peek at the first bytes of each connection instead: the HTTP/2 client
 * preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") goes to an http2 server, anything else to an
 * http server. Both serve the same handler. With TLS, ALPN picks the protocol.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import { callerLimitKey } from "./caller-address.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** A connection that has not sent enough bytes to pick HTTP/1.1 or HTTP/2 by then is closed. */
export const FIRST_BYTES_TIMEOUT_MS = 10_000;
/**
 * An HTTP/2 connection with no open stream for this long is closed (GOAWAY). Never while a
 * stream is open, so idle Receive streams (no mail for hours) stay; clients reconnect anyway.
 */
export const H2_IDLE_TIMEOUT_MS = 5 * 60_000;
/**
 * Concurrent streams per HTTP/2 connection (Node's default is 2^32-1). Above what a client
 * multiplexing many devices needs (the benchmarks use 500 per connection), below what lets
 * one connection pin unbounded memory in half-open requests.
 */
export const H2_MAX_CONCURRENT_STREAMS = 2_000;
/**
 * HTTP/2 receive windows (uploads): each stream's (SETTINGS_INITIAL_WINDOW_SIZE) and the
 * connection's (raised by a WINDOW_UPDATE when the session starts). HTTP/2's 64 KiB let a
 * client send that much per round trip: measured through a 50 ms round trip
 * (bench/src/wan-window-probe.ts), a 256 KiB Send took ~400 ms against ~60 ms, and a Session's
 * pipelined Sends 670-890/s against ~2,600/s. A request body is read as it arrives (up to its
 * method's read limit, within REQUEST_BODY_TIMEOUT_MS), so the windows change how fast a body
 * arrives, not how much one may hold; what a connection can have sent and not yet read (a
 * Session past its max_in_flight) is at most the connection window.
 */
export const H2_STREAM_WINDOW_BYTES = 1024 * 1024;
export const H2_CONNECTION_WINDOW_BYTES = 4 * 1024 * 1024;
/**
 * Accept queue of the listening socket (Node's default is 511; the kernel caps it at
 * net.core.somaxconn). A burst of new connections larger than the queue while the event loop
 * is busy overflowed it and clients saw ECONNRESET (a 2,000-call flood: ~10-25% reset).
 */
export const LISTEN_BACKLOG = 4_096;
/**
 * A request whose body is one message (every call but a client-streaming or bidirectional
 * one) must arrive whole within this; a body that trickles or never ends holds memory and a
 * handler: its stream is reset (HTTP/2) or its connection closed (HTTP/1.1).
 */
export const REQUEST_BODY_TIMEOUT_MS = 15_000;
/** HTTP/1.1 request headers must be complete within this (Node checks every half of it). */
export const HEADERS_TIMEOUT_MS = 15_000;
/**
 * Open connections per caller address (IPv4, or IPv6 /64) on one instance; more are closed
 * at once. High enough for a NAT of many devices and for load generators on loopback.
 */
export const MAX_CONNECTIONS_PER_ADDRESS = 4_096;

export type RequestHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

/**
 * Takes an HTTP/2 stream and serves it on the stream itself (true), or declines (false) and
 * the request goes on to the RequestHandler through Node's compat layer.
 */
export type NativeStreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;

export interface OnePortServer {
  port: number;
  /** Stops accepting, lets open requests finish for graceMs, then closes every connection. */
  close(graceMs: number): Promise<void>;
}

export interface OnePortOptions {
  host: string;
  port: number;
  handler: RequestHandler;
  tls?: { certPath: string; keyPath: string };
  /** Defaults FIRST_BYTES_TIMEOUT_MS, H2_IDLE_TIMEOUT_MS, REQUEST_BODY_TIMEOUT_MS, HEADERS_TIMEOUT_MS (tests lower them). */
  firstBytesTimeoutMs?: number;
  h2IdleTimeoutMs?: number;
  requestBodyTimeoutMs?: number;
  headersTimeoutMs?: number;
  /** Paths whose request body is a long-lived stream (bidirectional calls): no body deadline. */
  streamingRequest?: (path: string) => boolean;
  /** Defaults MAX_CONNECTIONS_PER_ADDRESS. */
  maxConnectionsPerAddress?: number;
  /** HTTP/2 streams served without the compat layer (the calls on every message's path). */
  native?: NativeStreamHandler;
}

export async function listenOnePort(opts: OnePortOptions): Promise<OnePortServer> {
  const sockets = new Set<net.Socket>();
  const h2Sessions = new Set<http2.Http2Session>();
  const h2IdleMs = opts.h2IdleTimeoutMs ?? H2_IDLE_TIMEOUT_MS;
  const firstBytesMs = opts.firstBytesTimeoutMs ?? FIRST_BYTES_TIMEOUT_MS;
  const headersMs = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  const bodyMs = opts.requestBodyTimeoutMs ?? REQUEST_BODY_TIMEOUT_MS;
  const streamingRequest = opts.streamingRequest ?? (() => false);
  const handler = withBodyDeadline(opts.handler, bodyMs, streamingRequest);
  const trackSessions = (server: http2.Http2Server | http2.Http2SecureServer) => {
    server.on("session", (s: http2.Http2Session) => {
      h2Sessions.add(s);
      if (!s.destroyed) s.setLocalWindowSize(H2_CONNECTION_WINDOW_BYTES);
      s.once("close", () => h2Sessions.delete(s));
      closeWhenIdle(s, h2IdleMs);
    });
    if (opts.native) nativeFirst(server, opts.native, bodyMs, streamingRequest);
  };
  const settings: http2.Settings = { maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS, initialWindowSize: H2_STREAM_WINDOW_BYTES };

  let outer: net.Server;
  let h1: http.Server | undefined;
  if (opts.tls) {
    const secure = http2.createSecureServer(
      { cert: readFileSync(opts.tls.certPath), key: readFileSync(opts.tls.keyPath), allowHTTP1: true, settings },
      handler as never,
    );
    trackSessions(secure);
    outer = secure;
  } else {
    h1 = http.createServer({ connectionsCheckingInterval: Math.max(50, Math.floor(headersMs / 2)) }, handler as http.RequestListener);
    // Long-lived server streams must not be cut by Node's default request timeouts; bodies
    // of single-message requests have their own deadline (withBodyDeadline).
    h1.requestTimeout = 0;
    h1.headersTimeout = headersMs;
    // Node enforces headersTimeout from a timer it starts when the server emits 'listening'.
    // This server never listens (the outer one hands it sockets), so without this the timer
    // never ran and headers trickled in a line at a time were never cut.
    h1.emit("listening");
    h1.keepAliveTimeout = 65_000;
    const h2 = http2.createServer({ settings }, handler as never);
    trackSessions(h2);
    const http1 = h1;
    outer = net.createServer((socket) => {
      let seen = Buffer.alloc(0);
      // Until the protocol is known nobody else watches this socket: bound the wait.
      const undecided = setTimeout(() => socket.destroy(), firstBytesMs);
      socket.once("close", () => clearTimeout(undecided));
      const onData = (chunk: Buffer) => {
        seen = Buffer.concat([seen, chunk]);
        const n = Math.min(seen.length, PREFACE.length);
        const isH2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
        if (isH2 && seen.length < PREFACE.length) return; // need more bytes to decide
        clearTimeout(undecided);
        socket.off("data", onData);
        socket.pause();
        socket.unshift(seen);
        // http2 reads the unshifted preface itself; resuming would drain it into the void.
        (isH2 ? h2 : http1).emit("connection", socket);
        if (!isH2) socket.resume();
      };
      socket.on("data", onData);
      socket.on("error", () => socket.destroy());
    });
  }
  const perAddress = new Map<string, number>();
  const maxPerAddress = opts.maxConnectionsPerAddress ?? MAX_CONNECTIONS_PER_ADDRESS;
  outer.on("connection", (s: net.Socket) => {
    const key = callerLimitKey(s.remoteAddress ?? "unknown");
    const n = (perAddress.get(key) ?? 0) + 1;
    if (n > maxPerAddress) {
      s.destroy();
      return;
    }
    perAddress.set(key, n);
    // A peer that vanished while a quiet stream is open is found by TCP keep-alive probes.
    s.setKeepAlive(true, 60_000);
    sockets.add(s);
    s.once("close", () => {
      sockets.delete(s);
      const left = (perAddress.get(key) ?? 1) - 1;
      if (left > 0) perAddress.set(key, left);
      else perAddress.delete(key);
    });
  });

  await new Promise<void>((resolve, reject) => {
    outer.once("error", reject);
    outer.listen(opts.port, opts.host, LISTEN_BACKLOG, () => {
      outer.off("error", reject);
      resolve();
    });
  });
  const address = outer.address() as net.AddressInfo;

  return {
    port: address.port,
    async close(graceMs: number) {
      const closed = new Promise<void>((resolve) => outer.close(() => resolve()));
      for (const s of h2Sessions) s.close(); // GOAWAY: finish open streams, accept no new ones
      h1?.closeIdleConnections();
      const deadline = Date.now() + graceMs;
      while (sockets.size > 0 && Date.now() < deadline) {
        h1?.closeIdleConnections();
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const s of sockets) s.destroy();
      // Stops the headers-timeout timer ('listening' above); it was never listening itself.
      h1?.close(() => {});
      await closed;
    },
  };
}

/**
 * Closes an HTTP/2 session after idleMs without open streams. The timer runs only while no
 * stream is open: a long-lived stream with no traffic must not be cut.
 *
 * A timer of our own, cleared when the session closes: Node's session.setTimeout() timer is
 * not cleared by destroy() (and setTimeout(0) is ignored once destroyed), so a session whose
 * last stream closed just before the client hung up stayed reachable from the timer list for
 * idleMs: every short-lived h2 connection pinned ~2.5 KB for 5 minutes.
 */
function closeWhenIdle(session: http2.Http2Session, idleMs: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const disarm = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  const arm = () => {
    disarm();
    if (session.closed || session.destroyed) return;
    timer = setTimeout(() => session.close(), idleMs);
    timer.unref();
  };
  arm();
  session.once("close", disarm);
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    if (open++ === 0) disarm();
    // on, not once (close comes once): a once wrapper is two more objects per open stream.
    stream.on("close", () => {
      if (--open === 0) arm();
    });
  });
}

/**
 * Streams the native handler takes never meet Node's compat layer, which costs an
 * Http2ServerRequest and an Http2ServerResponse (with their listeners and header objects,
 * ~2 KiB) per stream, for as long as an idle Receive stream stays open. The compat layer is
 * the server's one 'stream' listener, installed with the request handler: it is taken off
 * and called for the streams the native handler declines.
 */
function nativeFirst(
  server: http2.Http2Server | http2.Http2SecureServer,
  native: NativeStreamHandler,
  bodyMs: number,
  streamingRequest: (path: string) => boolean,
): void {
  const listeners = server.listeners("stream");
  if (listeners.length !== 1) throw new Error(`expected node:http2's compat layer as the one 'stream' listener, found ${listeners.length}`);
  const compat = listeners[0] as (...args: unknown[]) => void;
  server.removeListener("stream", compat);
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    if (!native(stream, headers)) {
      compat(stream, headers, flags, rawHeaders);
      return;
    }
    // The compat layer listened for errors; without a listener a reset stream's error would be thrown.
    stream.on("error", () => {});
    const path = String(headers[":path"] ?? "").split("?")[0];
    if (headers[":method"] === "POST" && !streamingRequest(path)) bodyDeadline(stream, bodyMs, () => stream.close(http2.constants.NGHTTP2_CANCEL));
  });
}

/**
 * Resets a request whose single-message body has not fully arrived within `ms` (a trickle or
 * a body that never ends). Client-streaming and bidirectional calls are exempt.
 */
function withBodyDeadline(handler: RequestHandler, ms: number, streamingRequest: (path: string) => boolean): RequestHandler {
  return (req, res) => {
    if (req.method === "POST" && !streamingRequest((req.url ?? "").split("?")[0])) {
      const stream = (req as http2.Http2ServerRequest).stream as http2.ServerHttp2Stream | undefined;
      bodyDeadline(req, ms, () => (stream ? stream.close(http2.constants.NGHTTP2_CANCEL) : req.socket?.destroy()));
    }
    handler(req, res);
  };
}

/** Calls `expire` unless `body` (a request or an HTTP/2 stream) has ended within `ms`. */
function bodyDeadline(body: Readable, ms: number, expire: () => void): void {
  if (body.readableEnded) return;
  const timer = setTimeout(() => {
    if (!body.readableEnded) expire();
  }, ms);
  timer.unref();
  // Once the body is in, nothing of the deadline stays with a long-lived request.
  const done = () => {
    clearTimeout(timer);
    body.off("end", done);
    body.off("close", done);
  };
  body.on("end", done);
  body.on("close", done);
}
