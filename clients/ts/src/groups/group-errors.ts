/** Errors of the group API (what the caller asked for cannot be done). Stable `code`. */
export type GroupErrorCode = "unknown_group" | "not_admin" | "not_member" | "inactive" | "admins_only" | "invalid_change" | "send_failed";

export class GroupError extends Error {
  readonly code: GroupErrorCode;
  constructor(code: GroupErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "GroupError";
  }
}
