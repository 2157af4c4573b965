/**
 * Everything the Messenger tells the app, as one typed union. Events carry decrypted content
 * only for the app's own display; the Messenger never logs them.
 */
import type { Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { KeyChange } from "../directory/directory-cache.js";
import type { ConversationKey, DeviceRef, StoredMessage } from "../store/conversation-store.js";

export type MessengerEvent =
  /** A text or attachment message stored locally (incoming, or a sync copy of one this account sent). */
  | { type: "message"; message: StoredMessage }
  /**
   * An outgoing Send was stored by the server for every addressed device. `sealed`: the
   * recipient's copies went with SendSealed (the server was not told the sender).
   */
  | { type: "sent"; messageId: string; label: string; conversation?: ConversationKey; serverTimestampMs: number; devices: number; sealed: boolean }
  /** The server refused the recipient's access key: this message (and later ones, until a new key arrives) goes with Send. */
  | { type: "sealed-fallback"; messageId: string; label: string; accountId: string; reason: string }
  /** An outgoing message failed for good (not retried). */
  | { type: "send-failed"; messageId: string; label: string; reason: string }
  /** An outgoing message could not be sent now and will be retried (server unreachable, overloaded...). */
  | { type: "send-retry"; messageId: string; label: string; reason: string }
  /** A delivery or read receipt from another account's device. */
  | { type: "receipt"; receipt: "delivered" | "read"; conversation: ConversationKey; from: DeviceRef; messageIds: string[] }
  | { type: "typing"; conversation: ConversationKey; from: DeviceRef; started: boolean }
  /** Another device of this account read these messages. */
  | { type: "read-sync"; from: DeviceRef; messages: { conversation: ConversationKey; messageId: string }[] }
  /**
   * A contact's devices or keys changed (a device added or removed). Warn the user and have
   * them re-check the safety number. `firstSeen` changes are not reported.
   */
  | { type: "key-change"; accountId: string; changes: KeyChange[]; safetyNumberChanged: boolean }
  /** A contact's device list failed verification (forked or rolled back by the server?). */
  | { type: "directory-untrusted"; accountId: string; problem: string; detail: string }
  /** A device was added to / removed from this account. */
  | { type: "device-linked"; device: DeviceRef; name: string }
  | { type: "device-revoked"; device: DeviceRef; self: boolean }
  /** Something odd in a channel or session; informational (messages are never shown twice). */
  | { type: "session-problem"; from: DeviceRef; problem: SessionProblem; detail: string }
  /**
   * The receive path dropped or could not keep something (never with plaintext): see
   * ReceiveProblem. `sequence` is the mailbox sequence, `from` the sending device if known.
   */
  | { type: "receive-problem"; problem: ReceiveProblem; sequence?: number; from?: DeviceRef; detail: string }
  /** A content type no handler is registered for (e.g. groups before the group layer). */
  | { type: "unhandled-content"; from: DeviceRef; bodyCase: string; content: Content }
  /**
   * History transfer to (role "sender") or from (role "receiver") a newly linked device of
   * this account. `done` of `total` messages; `failed` carries the reason (a refused archive
   * is not retried).
   */
  | {
      type: "history-transfer";
      role: "sender" | "receiver";
      phase: "waiting" | "uploading" | "sent" | "downloading" | "importing" | "done" | "failed";
      done: number;
      total: number;
      detail?: string;
    }
  /** Receive loop connectivity. */
  | { type: "connection"; state: "connecting" | "online" | "offline"; error?: string }
  /**
   * Receiving stopped for good (no retry): another process opened this device's mailbox
   * stream (two copies of one store?), or a store file is damaged (`detail` names it).
   * Revocation is reported as `device-revoked`.
   */
  | { type: "stopped"; reason: "replaced" | "store-damaged"; detail: string }
  /** The backlog up to the stream's start is processed. */
  | { type: "drained"; lastSequence: number }
  | { type: "prekeys-replenished"; uploaded: number; remaining: number }
  | { type: "signed-prekey-rotated"; signedPrekeyId: number; kemPrekeyId: number };

export type SessionProblem =
  /** Channel sequences were skipped (lost by the server, or ephemeral typing to an offline device). */
  | "channel-gap"
  /** An entry arrived after a later one. */
  | "channel-late"
  /** An entry failed to decrypt or verify; it was dropped. */
  | "undecryptable";

export type ReceiveProblem =
  /** The receive cursor / pending acks could not be written (retried with the next message). */
  | "state-save-failed"
  /** The server rejected an ack for good (e.g. INVALID_ARGUMENT); it was dropped. */
  | "ack-rejected"
  /** A message failed on every delivery (MAX_DELIVERY_ATTEMPTS); it was dropped and acked. */
  | "poison-dropped"
  /** A message or content field is malformed (e.g. an id that is not 16 bytes); dropped. */
  | "malformed"
  /** Content arrived on a path it may not use (e.g. a 1:1 message naming a group); dropped. */
  | "protocol-violation"
  /** The sending device is not in its account's verified device list; dropped. */
  | "unlisted-device"
  /**
   * Sealed mail that did not open or whose sender certificate did not verify (forged,
   * expired, unknown key, or an identity key other than the sender's listed one); dropped.
   */
  | "sealed-sender";

export type MessengerEventType = MessengerEvent["type"];
