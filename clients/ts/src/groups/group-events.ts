/** What the group layer reports (the Messenger forwards these to the app). */
import type { Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { GroupStateDiff } from "../protocol/group-state.js";
import type { DeviceRef } from "../protocol/address.js";

/** A decrypted group message whose sender is a current member (and an admin when required). */
export interface GroupMessage {
  /** Group id, hex. */
  groupId: string;
  sender: DeviceRef;
  messageId: Uint8Array;
  content: Content;
  serverTimestampMs: number;
}

export type GroupEvent =
  /** A new version of a group's state was accepted (`joined`: the first one this device saw). */
  | { type: "group-updated"; groupId: string; version: number; signer: DeviceRef; diff: GroupStateDiff; joined: boolean }
  /** This account is no longer a member (left, or removed by an admin). */
  | { type: "group-left"; groupId: string; removedBy?: DeviceRef }
  /** A member announced it left; it gets no further messages (an admin publishes the removal). */
  | { type: "group-member-left"; groupId: string; accountId: string }
  /** A state change, distribution or group message was refused (forged, not an admin, ...). */
  | { type: "group-rejected"; groupId?: string; from: DeviceRef; what: "state" | "distribution" | "message"; problem: string; detail: string };
