/** Crypto providers: `createNodeProvider` on Node, `createWebCryptoProvider` in browsers, `createNobleProvider` anywhere (pure JavaScript). */
export type { CryptoProvider, RandomSource } from "./provider.js";
export { createNobleProvider, type ProviderOptions } from "./noble-provider.js";
export { createNodeProvider } from "./node-provider.js";
export { createWebCryptoProvider, type WebCryptoProviderOptions } from "./webcrypto-provider.js";
export { createDeterministicRandom } from "./deterministic-random.js";
export { SMALL_ORDER_KEYS, isStrictEd25519Key } from "./ed25519-rule.js";
export * from "./errors.js";
export { concatBytes, u32be, utf8, toHex, fromHex } from "./bytes.js";
