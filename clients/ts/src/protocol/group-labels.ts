/**
 * Domain-separation labels and bounds of the group protocol (docs/PROTOCOL.md, "Groups").
 * Kept apart from labels.ts/limits.ts (the pairwise protocol's) so each layer owns its own.
 */
import { utf8 } from "../crypto/bytes.js";

/** First bytes of a SenderKeyMessage's associated data and signed bytes. */
export const SENDER_KEY_MESSAGE_LABEL = utf8("sealpost.sender-key-message.v1");
/** Ed25519 over label || state (SignedGroupState.signature, fixed by group.proto). */
export const GROUP_STATE_LABEL = utf8("sealpost.group-state.v1");

/** SenderKeyMessage.version. */
export const SENDER_KEY_VERSION = 1;

/** A group message may be at most this many iterations ahead of the next expected one. */
export const MAX_SENDER_KEY_FORWARD_JUMP = 2000;
/** Message keys kept per sender-key chain for late (out-of-order) messages; oldest dropped. */
export const MAX_SENDER_KEY_SKIPPED = 2000;
/** Chains kept per (sender device, distribution id), newest first (as libsignal's 5). */
export const MAX_SENDER_KEY_STATES = 5;
/** Distributions kept per sender device and group, so late mail of a rotated key decrypts. */
export const MAX_SENDER_DISTRIBUTIONS = 2;

/** Group and distribution ids are 16 random bytes. */
export const GROUP_ID_BYTES = 16;
export const DISTRIBUTION_ID_BYTES = 16;
/** GroupState bounds fixed by group.proto. */
export const MAX_GROUP_MEMBERS = 1000;
export const MAX_GROUP_TITLE_BYTES = 256;
