/**
 * The network address a call came from, for limits on unauthenticated RPCs. connect-es's
 * HandlerContext has no peer address, so connectNodeAdapter's contextValues copies the
 * socket's remote address into the call's context values (server.ts).
 *
 * Behind a proxy or layer-7 balancer every call shares the proxy's address: see
 * docs/OPERATIONS.md (limits are per instance and per caller address).
 */
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";

export const callerAddressKey = createContextKey<string>("unknown", { description: "remote address of the calling socket" });

export function callerContextValues(req: IncomingMessage | Http2ServerRequest): ContextValues {
  return createContextValues().set(callerAddressKey, req.socket?.remoteAddress ?? "unknown");
}

/**
 * The rate-limit key of an address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64
 * prefix, since one subscriber usually holds a whole /64.
 */
export function callerLimitKey(address: string): string {
  const a = address.replace(/%.*$/, "").toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return mapped[1];
  if (!a.includes(":")) return a;
  const [head, tail] = a.split("::", 2);
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(":")}::/64`;
}
