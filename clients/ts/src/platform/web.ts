/**
 * The platform parts in a browser (the "browser" condition of the package's `#platform`
 * import): the WebCrypto provider (@noble where WebCrypto lacks a primitive), and Connect over fetch, which has no bidirectional
 * streams, so Send and Ack are unary calls and mail arrives on a server-streaming Receive.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { createNobleProvider, type ProviderOptions } from "../crypto/noble-provider.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { createWebCryptoProvider } from "../crypto/webcrypto-provider.js";
import type { TransportFactory } from "../transport/server-api.js";

export const platformName = "browser";

/**
 * WebCrypto where the page has it; @noble alone where it does not (`crypto.subtle` exists only
 * in secure contexts: a page served over plain HTTP from another machine has none).
 */
export function defaultProvider(opts: ProviderOptions = {}, subtle: SubtleCrypto | null = globalThis.crypto?.subtle ?? null): CryptoProvider {
  return subtle ? createWebCryptoProvider({ ...opts, subtle }) : createNobleProvider(opts);
}

/**
 * `fetch` whose network failures are UNAVAILABLE. A browser rejects fetch with a bare
 * TypeError when it is offline or the server is unreachable, which Connect reports as
 * UNKNOWN; that would count against a message's bounded retries and fail mail written
 * offline, where UNAVAILABLE makes everything wait for the network instead.
 */
export function networkFailuresAsUnavailable(inner: typeof fetch): typeof fetch {
  return async (input, init) => {
    try {
      return await inner(input, init);
    } catch (e) {
      if (e instanceof TypeError) throw new ConnectError(`network: ${e.message}`, Code.Unavailable, undefined, undefined, e);
      throw e;
    }
  };
}

export const defaultTransport: TransportFactory = (baseUrl, interceptors) =>
  createConnectTransport({ baseUrl, useBinaryFormat: true, interceptors, fetch: networkFailuresAsUnavailable((input, init) => globalThis.fetch(input, init)) });

/** Whether the default transport carries bidirectional streams (the Session stream). */
export const defaultTransportHasBidi = false;
