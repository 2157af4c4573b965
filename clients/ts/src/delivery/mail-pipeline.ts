/**
 * The receive pipeline of one mailbox message: check the sending device against its
 * verified list, dedupe, decrypt without committing, hand the content to its handler (the
 * Messenger's, or the group layer's for sender-key bodies), mark it seen, then commit the
 * session step. A failure before the commit leaves the entry decryptable, so a redelivery
 * is processed again (the store dedupes by message id); mail seen before only finishes its
 * commit (a crash may have come between markSeen and the commit).
 */
import type { SignedTreeHead } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import { create } from "@bufbuild/protobuf";
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import type { DeviceIdentity, DeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { SenderCertificateError } from "../directory/sender-certificate.js";
import type { OpenedSealedMail, SealedReceiving } from "./sealed-receiving.js";
import { ContentSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { DeviceRef } from "../protocol/address.js";
import type { ContactDirectory } from "../directory/contact-directory.js";
import { seenKey, type ConversationStore } from "../store/conversation-store.js";
import { bytesEqual, toHex } from "../crypto/bytes.js";
import { DuplicateMessageError, SealpostCryptoError, UntrustedIdentityError } from "../crypto/errors.js";
import type { MessengerEvent, ReceiveProblem } from "../core/events.js";
import { isTransient } from "../transport/failure-kinds.js";
import type { DecryptedMessage, PendingDecryption, SessionCipher } from "../protocol/session-cipher.js";

/** Context handed to a content handler. */
export interface ContentContext {
  sender: DeviceRef;
  /** True when another device of this account sent it. */
  fromSelf: boolean;
  content: Content;
  mail: MailboxMessage;
  decrypted: DecryptedMessage;
}

export type ContentHandler = (ctx: ContentContext) => Promise<void>;
/** Handlers by Content.body case, plus "senderKeyBody" for shared bodies the group layer opens. */
export type ContentCase = NonNullable<Content["body"]["case"]> | "senderKeyBody";

export interface MailPipelineDeps {
  accountId: string;
  store: ConversationStore;
  cipher: SessionCipher;
  directory: ContactDirectory;
  /** The handler of one content body case ("senderKeyBody" for bodies only the group layer opens). */
  handler(bodyCase: ContentCase): ContentHandler | undefined;
  /** The group layer's handler of sender-key bodies (mail with an empty entry), if installed. */
  groupBodyHandler(): ((sender: DeviceRef, mail: MailboxMessage) => Promise<void>) | undefined;
  emit(e: MessengerEvent): void;
  receiveProblem(problem: ReceiveProblem, m: MailboxMessage, from: DeviceRef | undefined, detail: string): void;
  /** A new session was accepted (its one-time prekey is used up). */
  onNewSession(): void;
  /** Opens sealed mail (MailboxMessage.sealed); without it sealed mail is dropped as malformed. */
  sealed?: SealedReceiving;
  /** Told of every access key a contact's authenticated content carries (Content.sender_access_key). */
  onAccessKey?(accountId: string, key: Uint8Array): Promise<void>;
  /** Told of a key transparency head a contact gossiped (Content.log_head); checked in the background. */
  onLogHead?(from: DeviceRef, head: SignedTreeHead): void;
}

export class MailPipeline {
  constructor(private readonly d: MailPipelineDeps) {}

  /**
   * One mailbox message. Order: check the sending device against its verified list ->
   * decrypt (nothing committed) -> handler stores the content -> markSeen -> commit the
   * session. A failure before the commit leaves the entry decryptable, so the redelivery is
   * processed again (the store dedupes by message_id); mail seen before only finishes its
   * commit (a crash may have come between markSeen and the commit).
   */
  async process(mail: MailboxMessage): Promise<void> {
    let m = mail;
    let certifiedKey: Uint8Array | undefined;
    if (m.sealed) {
      // The sender is inside: open the entry, then go on as if the server had named it.
      const opened = await this.unseal(m);
      if (!opened) return;
      certifiedKey = opened.certificate.identityKey;
      m = {
        ...m,
        sender: create(DeviceAddressSchema, { accountId: opened.certificate.accountId, deviceId: opened.certificate.deviceId }),
        entry: opened.deviceEnvelope,
      };
    }
    if (!m.sender) return;
    const sender: DeviceRef = { accountId: m.sender.accountId, deviceId: m.sender.deviceId };
    if (m.messageId.length !== 16) return this.d.receiveProblem("malformed", m, sender, `message_id is ${m.messageId.length} bytes, not 16`);
    const listed = await this.listedDevice(sender);
    if (!listed) {
      return this.d.receiveProblem("unlisted-device", m, sender, `device ${sender.deviceId} is not in the verified device list of ${sender.accountId}`);
    }
    if (certifiedKey && !bytesEqual(certifiedKey, listed.signingKey)) {
      return this.d.receiveProblem(
        "sealed-sender",
        m,
        sender,
        `the sender certificate's identity key for ${sender.accountId}/${sender.deviceId} is not the one in its verified device list`,
      );
    }
    const seenAs = seenKey(sender.accountId, toHex(m.messageId));
    const seen = !m.ephemeral && (await this.d.store.isSeen(seenAs));
    const groupBody = this.d.groupBodyHandler();
    if (m.entry.length === 0 && groupBody) {
      if (seen) return;
      // A sender-key group body: no pairwise entry to decrypt (groups/messenger-groups.ts).
      await groupBody(sender, m);
      if (!m.ephemeral) await this.d.store.markSeen(seenAs);
      return;
    }
    if (seen) return this.finishCommit(m, sender);
    let dec: PendingDecryption;
    try {
      dec = await this.decrypt(m, sender);
    } catch (err) {
      if (isTransient(err)) throw err;
      // Forged, or for a session we no longer have: drop it. (Duplicates: already committed.)
      if (!(err instanceof DuplicateMessageError)) {
        this.d.emit({
          type: "session-problem",
          from: sender,
          problem: "undecryptable",
          detail: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
        });
      }
      return;
    }
    try {
      const ch = dec.channel;
      if (ch.status === "gap" && ch.gap) {
        this.d.emit({
          type: "session-problem",
          from: sender,
          problem: "channel-gap",
          detail: `channel sequences ${ch.gap.first}..${ch.gap.last} were skipped`,
        });
      } else if (ch.status === "late") {
        this.d.emit({ type: "session-problem", from: sender, problem: "channel-late", detail: `channel sequence ${ch.sequence} arrived late` });
      }
      const fromSelf = sender.accountId === this.d.accountId;
      const content = dec.content;
      const invalid = content && malformedContent(content);
      if (invalid) {
        this.d.receiveProblem("malformed", m, sender, invalid);
      } else {
        // Before the handler: what it queues in answer (a receipt) can already go sealed.
        if (content?.senderAccessKey.length && !fromSelf) await this.d.onAccessKey?.(sender.accountId, content.senderAccessKey);
        if (content?.logHead && !fromSelf) this.d.onLogHead?.(sender, content.logHead);
        const bodyCase: ContentCase | undefined = content ? content.body.case : "senderKeyBody";
        const handler = bodyCase && this.d.handler(bodyCase);
        if (handler) {
          await handler({ sender, fromSelf, content: content ?? create(ContentSchema), mail: m, decrypted: dec });
        } else if (content) {
          this.d.emit({ type: "unhandled-content", from: sender, bodyCase: bodyCase ?? "none", content });
        }
      }
      if (!m.ephemeral) await this.d.store.markSeen(seenAs);
      await dec.commit();
    } finally {
      dec.discard();
    }
    if (dec.newSession) this.d.onNewSession();
  }

  /** Mail already stored and marked seen: commit its session step if a crash cut it off. */
  private async finishCommit(m: MailboxMessage, sender: DeviceRef): Promise<void> {
    let dec: PendingDecryption;
    try {
      dec = await this.d.cipher.beginDecrypt(m.entry, m.sharedBody, sender);
    } catch (err) {
      if (isTransient(err)) throw err;
      return; // Committed before (the usual case): a duplicate.
    }
    try {
      await dec.commit();
    } finally {
      dec.discard();
    }
  }

  /**
   * `sender` as listed in its account's verified device list (the cached one; fetched once
   * more when the device is not in it, e.g. a device linked since), or undefined.
   */
  private async listedDevice(sender: DeviceRef): Promise<DeviceIdentity | undefined> {
    const find = (l: DeviceList | undefined) => l?.devices.find((d) => d.deviceId === sender.deviceId);
    return find(await this.d.directory.known(sender.accountId)) ?? find(await this.d.directory.refresh(sender.accountId));
  }

  /** Opens sealed mail; reports and drops what does not open or verify (undefined). */
  private async unseal(m: MailboxMessage): Promise<OpenedSealedMail | undefined> {
    if (!this.d.sealed) {
      this.d.receiveProblem("malformed", m, undefined, "sealed mail, and this client does not open sealed mail");
      return undefined;
    }
    try {
      return await this.d.sealed.open(m.entry);
    } catch (err) {
      if (!(err instanceof SealpostCryptoError || err instanceof SenderCertificateError)) throw err;
      this.d.receiveProblem("sealed-sender", m, undefined, `sealed mail dropped: ${err.message}`);
      return undefined;
    }
  }

  /** Decrypts (uncommitted); an unknown sender identity triggers one refresh of the sender's device list. */
  private async decrypt(m: MailboxMessage, sender: DeviceRef): Promise<PendingDecryption> {
    try {
      return await this.d.cipher.beginDecrypt(m.entry, m.sharedBody, sender);
    } catch (err) {
      if (!(err instanceof UntrustedIdentityError)) throw err;
      await this.d.directory.refresh(sender.accountId);
      return this.d.cipher.beginDecrypt(m.entry, m.sharedBody, sender);
    }
  }
}

/**
 * What is wrong with the ids of a decrypted content (16-byte ids of the wrong length), or
 * undefined. Checked before any handler stores anything.
 */
function malformedContent(content: Content, depth = 0): string | undefined {
  const id16 = (b: Uint8Array, what: string, optional = false) =>
    b.length === 16 || (optional && b.length === 0) ? undefined : `${what} is ${b.length} bytes, not 16`;
  const c = content.conversation?.kind;
  const bad =
    content.messageId.length !== 0 ? id16(content.messageId, "message_id") : c?.case === "groupId" ? id16(c.value, "conversation.group_id") : undefined;
  if (bad) return bad;
  const b = content.body;
  switch (b.case) {
    case "text":
      return id16(b.value.quoteMessageId, "text.quote_message_id", true);
    case "receipt":
      for (const id of b.value.messageIds) if (id.length !== 16) return `receipt.message_ids has an id of ${id.length} bytes`;
      return undefined;
    case "sync": {
      const k = b.value.kind;
      if (k.case === "sent" && k.value.content) return depth > 0 ? "nested sync" : malformedContent(k.value.content, depth + 1);
      if (k.case === "read") {
        for (const mark of k.value.marks) {
          const mc = mark.conversation?.kind;
          const e = id16(mark.messageId, "read mark message_id") ?? (mc?.case === "groupId" ? id16(mc.value, "read mark group_id") : undefined);
          if (e) return e;
        }
      }
      return undefined;
    }
    case "senderKeyDistribution":
      return id16(b.value.groupId, "sender_key_distribution.group_id") ?? id16(b.value.distributionId, "sender_key_distribution.distribution_id");
    case "groupControl":
      return b.value.kind.case === "leave" ? id16(b.value.kind.value.groupId, "group_leave.group_id") : undefined;
    default:
      return undefined;
  }
}
