/**
 * The limits delivery enforces (ServerLimits in the schema). One place, so GetLimits answers
 * exactly what Send, Receive and the attachment path check.
 */
import { create } from "@bufbuild/protobuf";
import { ServerLimitsSchema, type ServerLimits } from "@sealpost/gen/sealpost/delivery/v1/limits_pb.js";
import { MAILBOX_RETENTION_MS } from "../nats/layout.js";

export interface DeliveryLimits {
  maxBodyBytes: number;
  /** 4096 (not the proto's 8192): a maximal Send (256 KiB body + 1000 entries) must fit READ_MAX_BYTES (5 MiB). */
  maxEntryBytes: number;
  maxEntriesPerSend: number;
  maxDevicesPerAccount: number;
  maxPrekeysPerUpload: number;
  maxInFlight: number;
  mailboxRetentionMs: number;
  maxAttachmentBytes: number;
  attachmentChunkBytes: number;
  sendsPerMinute: number;
  /** CreateAttachment per device and instance (each reserves up to max_attachment_bytes). */
  attachmentsPerMinute: number;
  /** Sequences in one Ack (the schema says 1 to 1000). */
  maxAckSequences: number;
  /**
   * Receive streams and Sessions one device may open per minute on an instance: each new one
   * replaces the last, so without a bound one device could churn thousands of them.
   */
  streamOpensPerMinute: number;
  /** SendSealed per recipient account and instance (the sender is unknown: the account is what abuse reaches). */
  sealedSendsPerAccountPerMinute: number;
  /** SendSealed per caller address (IPv4, IPv6 /64) and instance. */
  sealedSendsPerAddressPerMinute: number;
}

export const defaultLimits: DeliveryLimits = {
  maxBodyBytes: 256 * 1024,
  maxEntryBytes: 4096,
  maxEntriesPerSend: 1000,
  maxDevicesPerAccount: 10,
  maxPrekeysPerUpload: 100,
  maxInFlight: 256,
  mailboxRetentionMs: MAILBOX_RETENTION_MS,
  maxAttachmentBytes: 100 * 1024 * 1024,
  attachmentChunkBytes: 256 * 1024,
  sendsPerMinute: 6000,
  attachmentsPerMinute: 60,
  maxAckSequences: 1000,
  streamOpensPerMinute: 60,
  sealedSendsPerAccountPerMinute: 600,
  sealedSendsPerAddressPerMinute: 6000,
};

/** The directory's abuse limits that GetLimits reports beside the delivery limits. */
export interface DirectoryAbuseLimits {
  accountsPerAddressPerHour: number;
  oneTimePrekeysPerDevicePerMinute: number;
}

export function limitsMessage(l: DeliveryLimits, directory?: DirectoryAbuseLimits): ServerLimits {
  return create(ServerLimitsSchema, {
    maxBodyBytes: l.maxBodyBytes,
    maxEntryBytes: l.maxEntryBytes,
    maxEntriesPerSend: l.maxEntriesPerSend,
    maxDevicesPerAccount: l.maxDevicesPerAccount,
    maxPrekeysPerUpload: l.maxPrekeysPerUpload,
    maxInFlight: l.maxInFlight,
    mailboxRetentionSeconds: Math.floor(l.mailboxRetentionMs / 1000),
    maxAttachmentBytes: BigInt(l.maxAttachmentBytes),
    attachmentChunkBytes: l.attachmentChunkBytes,
    sendsPerMinute: l.sendsPerMinute,
    mailboxStreamsPerDevicePerMinute: l.streamOpensPerMinute,
    accountsPerAddressPerHour: directory?.accountsPerAddressPerHour ?? 0,
    oneTimePrekeysPerDevicePerMinute: directory?.oneTimePrekeysPerDevicePerMinute ?? 0,
    sealedSendsPerAccountPerMinute: l.sealedSendsPerAccountPerMinute,
    sealedSendsPerAddressPerMinute: l.sealedSendsPerAddressPerMinute,
  });
}
