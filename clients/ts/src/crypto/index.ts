/** Crypto providers: pick `createNodeProvider` on Node, `createNobleProvider` elsewhere. */
export type { CryptoProvider, RandomSource } from "./provider.js";
export { createNobleProvider, type ProviderOptions } from "./noble-provider.js";
export { createNodeProvider } from "./node-provider.js";
export { createDeterministicRandom } from "./deterministic-random.js";
export * from "./errors.js";
export { concatBytes, u32be, utf8, toHex, fromHex } from "./bytes.js";
