/**
 * A stored record as the schema's MailboxMessage.
 */
import { create } from "@bufbuild/protobuf";
import { MailboxMessageSchema, type MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import type { MailboxRecord } from "./mailbox-record.js";

export function toMailboxMessage(rec: MailboxRecord, sequence: number, body: Uint8Array): MailboxMessage {
  return create(MailboxMessageSchema, {
    sequence: BigInt(sequence),
    messageId: rec.messageId,
    sender: rec.sealed ? undefined : create(DeviceAddressSchema, { accountId: rec.senderAccountId, deviceId: rec.senderDeviceId }),
    serverTimestampMs: BigInt(rec.timestampMs),
    sharedBody: body,
    entry: rec.entry,
    ephemeral: rec.ephemeral,
    sealed: !!rec.sealed,
  });
}
