/**
 * Public API of the group layer (see ./README.md): MessengerGroups on a Messenger, or
 * GroupManager over any GroupPort; the protocol pieces live in ../protocol (sender keys,
 * group state, GroupCipher) and the stores in ../store/group-*.ts.
 */
export { MessengerGroups, type MessengerGroupsOptions } from "./messenger-groups.js";
export { GroupManager, type GroupInfo, type GroupManagerOptions } from "./group-manager.js";
export type { GroupPort, DeviceRef, GroupDeviceInfo, GroupSendOutcome } from "./group-port.js";
export type { GroupEvent, GroupMessage } from "./group-events.js";
export { GroupDirectoryError, GroupError, GroupUpdatePendingError, type GroupErrorCode } from "./group-errors.js";
export { GroupCipher, groupContent, type DecryptedGroupMessage, type PendingGroupDecryption } from "../protocol/group-cipher.js";
export { GroupStateError, GroupChangeError, type GroupChange, type GroupStateDiff, type GroupStateProblem } from "../protocol/group-state.js";
export { createMemoryGroupStores } from "../store/group-memory-store.js";
export { createFileGroupStores } from "../store/group-file-store.js";
export type { GroupStores, GroupRecord } from "../store/group-interfaces.js";
