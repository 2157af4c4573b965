/** In the page: rebuilds every conformance vector file with the SDK's protocol code and the @noble provider. */
import { createNobleProvider } from "../../src/crypto/noble-provider.js";
import { buildGroupVectors } from "../../src/tools/group-vector-builders.js";
import { buildAllVectors } from "../../src/tools/vector-builders.js";

const g = globalThis as Record<string, unknown>;
g.buildVectors = async () => {
  const make = (random: (n: number) => Uint8Array) => createNobleProvider({ random });
  const files = { ...(await buildAllVectors(make)), ...buildGroupVectors(make) };
  return Object.fromEntries(Object.entries(files).map(([name, value]) => [name, `${JSON.stringify(value, null, 2)}\n`]));
};
g.ready = true;
