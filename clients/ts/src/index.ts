/**
 * The sealpost client SDK: a Messenger per device (accounts, linking, 1:1 and group mail,
 * receipts, typing, attachments, history transfer) over stores of your choice. Lower layers
 * have their own entry points: `@sealpost/client/protocol`, `/crypto`, `/directory`,
 * `/groups` and `/util`.
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
export { createFileMessengerStores } from "./store/file-messenger-stores.js";
export { ACK_DELAY_MS } from "./delivery/receive-loop.js";
export { RETRY_AFTER_HEADER } from "./transport/failure-kinds.js";
