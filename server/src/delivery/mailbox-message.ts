/**
 * A stored record as the schema's MailboxMessage: written as the plain object a protobuf-es
 * message is ($typeName and every field), once per delivered message; create() would fill
 * it by reflection (see send.ts, storedOutcome).
 */
import type { MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import type { MailboxRecord } from "./mailbox-record.js";

export function toMailboxMessage(rec: MailboxRecord, sequence: number, body: Uint8Array): MailboxMessage {
  return {
    $typeName: "sealpost.delivery.v1.MailboxMessage",
    sequence: BigInt(sequence),
    messageId: rec.messageId,
    sender: rec.sealed ? undefined : { $typeName: "sealpost.directory.v1.DeviceAddress", accountId: rec.senderAccountId, deviceId: rec.senderDeviceId },
    serverTimestampMs: BigInt(rec.timestampMs),
    sharedBody: body,
    entry: rec.entry,
    ephemeral: rec.ephemeral,
    sealed: !!rec.sealed,
  };
}
