/**
 * Sealed sending (docs/PROTOCOL.md, "Sealed sending"): 1:1 mail to another account goes with
 * SendSealed, without a token, when this device holds that account's access key; the server
 * stores it with no sender. This class keeps the contacts' access keys (learned from their
 * content, forgotten when the server refuses one) and turns the recipient's part of a Send
 * into a SendSealed: each entry sealed to its device's identity key with this device's
 * sender certificate inside.
 */
import { create } from "@bufbuild/protobuf";
import {
  AccountVersionSchema,
  SendEntrySchema,
  SendRequestSchema,
  SendSealedRequestSchema,
  type SendRequest,
  type SendSealedRequest,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { SenderCertificate } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { bytesEqual, wipe } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { ContactDirectory } from "../directory/contact-directory.js";
import { newSealingKey, sealEntry } from "../protocol/sealed-entry.js";
import { mapInOrder } from "../util/in-order.js";
import type { ConversationStore } from "../store/conversation-store.js";

export const ACCESS_KEY_BYTES = 16;

export interface SealedSendingDeps {
  provider: CryptoProvider;
  store: ConversationStore;
  directory: ContactDirectory;
  /** This device's sender certificate (Messenger.senderCertificate: checked and cached). */
  certificate(): Promise<SenderCertificate>;
  now(): number;
  /** Whether this device sends sealed at all (MessengerOptions.sealedSender). */
  enabled: boolean;
}

export class SealedSending {
  /** Contacts' keys as stored (null: known to have none), so a send reads no file. */
  private readonly keys = new Map<string, Uint8Array | null>();

  constructor(private readonly d: SealedSendingDeps) {}

  /** The key to send `accountId` sealed mail with, or undefined (sealed sending off, or no key from it yet). */
  async accessKey(accountId: string): Promise<Uint8Array | undefined> {
    if (!this.d.enabled) return undefined;
    let k = this.keys.get(accountId);
    if (k === undefined) {
      k = (await this.d.store.getAccessKey(accountId))?.key ?? null;
      this.keys.set(accountId, k);
    }
    return k ?? undefined;
  }

  /** An account's key as its authenticated content carried it (Content.sender_access_key). */
  async remember(accountId: string, key: Uint8Array): Promise<void> {
    if (key.length !== ACCESS_KEY_BYTES) return;
    const known = await this.peek(accountId);
    if (known && bytesEqual(known, key)) return;
    await this.d.store.setAccessKey(accountId, { accountId, key: key.slice(), receivedAtMs: this.d.now() });
    this.keys.set(accountId, key.slice());
  }

  /** The server refused the key (rotated, or the account stopped taking sealed mail): send normally until a new one arrives. */
  async forget(accountId: string): Promise<void> {
    await this.d.store.setAccessKey(accountId, undefined);
    this.keys.set(accountId, null);
  }

  private async peek(accountId: string): Promise<Uint8Array | undefined> {
    const k = this.keys.get(accountId);
    if (k !== undefined) return k ?? undefined;
    return (await this.d.store.getAccessKey(accountId))?.key;
  }

  /**
   * The SendSealed for `accountId`'s entries of `req` (the same message_id, body and
   * ephemeral flag; each entry sealed to its device with this device's certificate), or
   * undefined when `req` has no entry for it (no device of it reachable yet). One ephemeral
   * key per call.
   */
  async seal(req: SendRequest, accountId: string, accessKey: Uint8Array, retry: boolean): Promise<SendSealedRequest | undefined> {
    if (!req.entries.some((e) => e.device?.accountId === accountId)) return undefined;
    const certificate = await this.d.certificate();
    const list = await this.d.directory.devices(accountId);
    const sealing = await newSealingKey(this.d.provider);
    try {
      const entries = await mapInOrder(
        req.entries.filter((e) => e.device?.accountId === accountId),
        async (e) => {
          const device = list.devices.find((d) => d.deviceId === e.device?.deviceId);
          if (!device) throw new Error(`no verified identity key for ${accountId}/${e.device?.deviceId}`);
          return create(SendEntrySchema, { device: e.device, entry: await sealEntry(this.d.provider, sealing, device.dhKey, certificate, e.entry) });
        },
      );
      const versions = req.versions.filter((v) => v.accountId === accountId).map((v) => create(AccountVersionSchema, v));
      return create(SendSealedRequestSchema, {
        accountId,
        accessKey,
        send: create(SendRequestSchema, { messageId: req.messageId, sharedBody: req.sharedBody, entries, versions, retry, ephemeral: req.ephemeral }),
      });
    } finally {
      wipe(sealing.privateKey);
    }
  }
}

/** What of `req` is not for `accountId` (this account's other devices), or undefined when nothing is. */
export function withoutAccount(req: SendRequest, accountId: string): SendRequest | undefined {
  const entries = req.entries.filter((e) => e.device?.accountId !== accountId);
  if (!entries.length) return undefined;
  return create(SendRequestSchema, { ...req, entries, versions: req.versions.filter((v) => v.accountId !== accountId) });
}
