/**
 * The SDK for browsers: the same Messenger, groups and protocol as on Node, with the browser's
 * platform parts (Connect over fetch; the WebCrypto provider, @noble where WebCrypto lacks a primitive) and stores that need no
 * file system (IndexedDB, or memory). Bundlers pick the browser parts through the package's `#platform`
 * import (the "browser" condition); nothing here imports a Node module.
 */
export {
  Messenger,
  createMemoryMessengerStores,
  type MessengerOptions,
  type MessengerStores,
  type DeviceInfo,
  type PendingLink,
} from "./messenger/messenger.js";
export type { MessengerEvent, MessengerEventType, SessionProblem, ReceiveProblem } from "./core/events.js";
export { MessengerError, messengerErrorOf, type MessengerErrorCode } from "./core/messenger-errors.js";
export type { MessengerStats } from "./messenger/messenger-stats.js";
export {
  directConversation,
  groupConversation,
  conversationGroupId,
  directPeer,
  type ConversationKey,
  type ConversationStore,
  type MessageBody,
  type MessageStatus,
  type ReceiveState,
  type StoredMessage,
  type AttachmentInfo,
} from "./store/conversation-store.js";
export { addressKey, parseAddressKey, type DeviceRef } from "./protocol/address.js";
export type { AttachmentMeta } from "./transport/attachments.js";
export { defaultTransport, type ServerApi, type TransportFactory } from "./transport/server-api.js";
export { MessengerGroups, type MessengerGroupsOptions } from "./groups/messenger-groups.js";
export type { GroupInfo } from "./groups/group-records.js";
export type { GroupEvent } from "./groups/group-events.js";
export { createMemoryGroupStores } from "./store/group-memory-store.js";
export { openIndexedDbStores, type IndexedDbStores } from "./store/indexeddb-stores.js";
export type { IndexedDbOptions } from "./store/indexeddb-space.js";
export { createNobleProvider } from "./crypto/noble-provider.js";
export { createWebCryptoProvider } from "./crypto/webcrypto-provider.js";
export type { CryptoProvider } from "./crypto/provider.js";
export { platformName } from "#platform";
