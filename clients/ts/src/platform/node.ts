/**
 * The platform parts on Node (the "default" of the package's `#platform` import): node:crypto
 * for the primitives Node has, and Connect over HTTP/2 with bidirectional streams, so Send and
 * Ack go over one Session stream, on connections with wide receive windows (http2-windows.ts).
 */
import { createConnectTransport } from "@connectrpc/connect-node";
import { createNodeProvider } from "../crypto/node-provider.js";
import { wideWindowSessionManager } from "./http2-windows.js";
import type { ProviderOptions } from "../crypto/noble-provider.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { TransportFactory } from "../transport/server-api.js";

export const platformName = "node";

export function defaultProvider(opts: ProviderOptions = {}): CryptoProvider {
  return createNodeProvider(opts);
}

export const defaultTransport: TransportFactory = (baseUrl, interceptors) =>
  createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors, sessionManager: wideWindowSessionManager(baseUrl) });

/** Whether the default transport carries bidirectional streams (the Session stream). */
export const defaultTransportHasBidi = true;
