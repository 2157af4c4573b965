/**
 * What the group layer needs from the Messenger: directory look-ups, pairwise sends, the
 * group Send, and somewhere to put what it decrypted. MessengerGroups implements it over a
 * Messenger (messenger-groups.ts); tests use an in-memory network (test/groups-network.ts).
 * Keeps the group layer free of transport details and of the Messenger's internals.
 */
import type { Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { GroupEvent, GroupMessage } from "./group-events.js";

/** A device, by account and device id. */
export type { DeviceRef } from "../protocol/address.js";
import type { DeviceRef } from "../protocol/address.js";

/** A current device of an account, from its verified device list. */
export interface GroupDeviceInfo {
  deviceId: number;
  /** Ed25519 identity signing key (verifies SignedGroupState signatures). */
  signingKey: Uint8Array;
}

export type GroupSendOutcome = { stored: true; serverTimestampMs: number } | { stored: false; mismatchedAccounts: string[] };

export interface GroupPort {
  /** This device. */
  readonly self: DeviceRef;
  /** This device's identity signing seed (it signs the group states this device publishes). */
  signingSeed(): Promise<Uint8Array>;
  /** Current devices of an account (verified device list; fetched when stale or `refresh`). */
  devices(accountId: string, opts?: { refresh?: boolean }): Promise<GroupDeviceInfo[]>;
  /**
   * Sends content over the pairwise sessions (sealed fan-out) to every current device of
   * `accounts` and every other device of this account; resolves once the server stored it, so
   * a later Send reaches each mailbox after it. `direct`: the caller is a queued group send
   * (sendContent inside the outbox), so send now instead of queueing behind it.
   */
  sendPairwise(content: Content, accounts: string[], opts?: { direct?: boolean }): Promise<void>;
  /** One Send of a sender-key body with an empty entry per device (message_id = content's). */
  sendGroupBody(messageId: Uint8Array, sharedBody: Uint8Array, devices: DeviceRef[]): Promise<GroupSendOutcome>;
  /** A group message decrypted and checked (in order of arrival, or when its key came later). */
  received(message: GroupMessage): Promise<void> | void;
  /** Group state changes and problems, for the app. */
  emit(event: GroupEvent): void;
}
