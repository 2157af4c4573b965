/**
 * In a Chromium page (web-bench.ts): the same session_setup and steady_1to1 workloads as on
 * Node, with the SDK's browser provider (WebCrypto) and with @noble, and the bare primitives of a pair
 * and of a ratchet key through @noble and through WebCrypto (pair-primitives.ts).
 * window.measure(figure, ms) runs one timed sample and returns ops/s.
 */
import { createNobleProvider, createWebCryptoProvider } from "@sealpost/client/web";
import { coreSetups, timedOps, type Runner } from "../sealpost-workload.js";
import {
  providerBodyDigest,
  providerPair,
  providerRatchetKey,
  providerVerify,
  webCryptoBodyDigest,
  webCryptoPair,
  webCryptoRatchetKey,
  webCryptoVerify,
} from "./pair-primitives.js";

export type PageFigure =
  | "session_setup"
  | "steady_1to1"
  | "session_setup_webcrypto"
  | "steady_1to1_webcrypto"
  | "pair_noble"
  | "pair_webcrypto"
  | "ratchet_key_noble"
  | "ratchet_key_webcrypto"
  | "body_digest_noble"
  | "body_digest_webcrypto"
  | "ed25519_verify_noble"
  | "ed25519_verify_webcrypto";
const noble = createNobleProvider();
const webCrypto = coreSetups(createWebCryptoProvider());
const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const setups: Record<PageFigure, () => Promise<Runner>> = {
  ...coreSetups(noble),
  session_setup_webcrypto: webCrypto.session_setup,
  steady_1to1_webcrypto: webCrypto.steady_1to1,
  pair_noble: async () => ({ op: providerPair(noble) }),
  pair_webcrypto: async () => ({ op: webCryptoPair(crypto.subtle, random) }),
  ratchet_key_noble: async () => ({ op: await providerRatchetKey(noble) }),
  ratchet_key_webcrypto: async () => ({ op: await webCryptoRatchetKey(crypto.subtle, noble) }),
  body_digest_noble: async () => ({ op: providerBodyDigest(noble) }),
  body_digest_webcrypto: async () => ({ op: webCryptoBodyDigest(crypto.subtle) }),
  ed25519_verify_noble: async () => ({ op: await providerVerify(noble) }),
  ed25519_verify_webcrypto: async () => ({ op: await webCryptoVerify(crypto.subtle, noble) }),
};
const runners = new Map<PageFigure, Runner>();

async function runner(name: PageFigure): Promise<Runner> {
  let r = runners.get(name);
  if (!r) runners.set(name, (r = await setups[name]()));
  return r;
}

const g = globalThis as Record<string, unknown>;
g.measure = async (name: PageFigure, ms: number) => timedOps(await runner(name), ms);
g.ready = true;
