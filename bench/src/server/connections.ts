/**
 * A fixed number of HTTP/2 connections to one server, each a connect-es transport (Connect
 * protocol, binary), handed out round robin. Calls carry their device's token per call.
 */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";

export interface Pool<T> {
  size: number;
  next(): T;
  at(i: number): T;
  close(): void;
}

export function connections<T>(baseUrl: string, count: number, make: (t: Transport) => T): Pool<T> {
  const managers = Array.from({ length: count }, () => new Http2SessionManager(baseUrl));
  const items = managers.map((sessionManager) =>
    make(
      createConnectTransport({
        baseUrl,
        httpVersion: "2",
        useBinaryFormat: true,
        sessionManager,
        readMaxBytes: 8 * 1024 * 1024,
        writeMaxBytes: 8 * 1024 * 1024,
      }),
    ),
  );
  let i = 0;
  return {
    size: count,
    next: () => items[i++ % count],
    at: (k) => items[k % count],
    close: () => managers.forEach((m) => m.abort()),
  };
}
