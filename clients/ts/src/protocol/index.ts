/**
 * Public API of the sealpost client protocol (see ./README.md):
 * device keys, key bundles, SessionCipher (fan-out encrypt, decrypt), safety numbers.
 */
export { createDeviceIdentity, generatePrekeyBatch, type PrekeyBatchOptions } from "./device-keys.js";
export { SessionCipher, type Address, type Recipient, type EncryptedMessage, type DecryptedMessage, type SessionCipherOptions } from "./session-cipher.js";
export { verifyKeyBundle, type VerifiedBundle } from "./prekeys.js";
export { assertDeviceIdentity, verifyDhKeySignature, type LocalIdentity, type RemoteIdentity } from "./identity.js";
export { safetyNumber, accountFingerprint, formatSafetyNumber } from "./safety-number.js";
export type { ChannelReport, ChannelStatus } from "./channel.js";
export { pad, unpad, paddedLength } from "./padding.js";
export * from "../crypto/errors.js";
export type { CryptoProvider } from "../crypto/provider.js";
export { createNobleProvider } from "../crypto/noble-provider.js";
export { createNodeProvider } from "../crypto/node-provider.js";
export { createMemoryStores } from "../store/memory-store.js";
export { createFileStores } from "../store/file-store.js";
export { addressKey, type ProtocolStores } from "../store/interfaces.js";
