/**
 * Public API of the sealpost client protocol (see ./README.md):
 * device keys, key bundles, SessionCipher (fan-out encrypt, decrypt), safety numbers.
 */
export { createDeviceIdentity, generatePrekeyBatch, type PrekeyBatchOptions } from "./device-keys.js";
export { SessionCipher, type Recipient, type EncryptedMessage, type DecryptedMessage, type SessionCipherOptions } from "./session-cipher.js";
export { verifyKeyBundle, generateOneTimePrekeys, toKemPrekey, toOneTimePrekey, toSignedPrekey, type VerifiedBundle } from "./prekeys.js";
export { assertDeviceIdentity, toDeviceIdentity, verifyDhKeySignature, type LocalIdentity, type RemoteIdentity } from "./identity.js";
export { safetyNumber, accountFingerprint, formatSafetyNumber } from "./safety-number.js";
export type { ChannelReport, ChannelStatus } from "./channel.js";
export { pad, unpad, paddedLength } from "./padding.js";
export { newSealingKey, openSealedEntry, sealEntry, type SealingKey } from "./sealed-entry.js";
export * from "../crypto/errors.js";
export type { CryptoProvider } from "../crypto/provider.js"; // providers: @sealpost/client/crypto (Node) or /web
export { addressKey, parseAddressKey, type DeviceRef } from "./address.js";
export type { ProtocolStores } from "./stores.js";
export { GroupCipher, groupContent } from "./group-cipher.js";
export { createMemoryStores } from "../store/memory-store.js";
export { createMemoryGroupStores } from "../store/group-memory-store.js";
