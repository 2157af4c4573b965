/** In the page: rebuilds every conformance vector file with the SDK's protocol code and a provider (WebCrypto or @noble). */
import { createNobleProvider } from "../../src/crypto/noble-provider.js";
import { createWebCryptoProvider } from "../../src/crypto/webcrypto-provider.js";
import { buildGroupVectors } from "../../src/tools/group-vector-builders.js";
import { buildAllVectors } from "../../src/tools/vector-builders.js";
import "./provider-agreement-page.js";

const g = globalThis as Record<string, unknown>;
g.buildVectors = async (provider: "webcrypto" | "noble") => {
  const make = (random: (n: number) => Uint8Array) => (provider === "webcrypto" ? createWebCryptoProvider({ random }) : createNobleProvider({ random }));
  const files = { ...(await buildAllVectors(make)), ...(await buildGroupVectors(make)) };
  return Object.fromEntries(Object.entries(files).map(([name, value]) => [name, `${JSON.stringify(value, null, 2)}\n`]));
};
g.ready = true;
