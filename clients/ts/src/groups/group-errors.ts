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

/**
 * GroupPort.devices: the account's device list cannot be trusted (it failed verification) or
 * the account does not exist. A state change signed by such an account is rejected; any other
 * error of devices() (network, server) is transient and the change is verified again later.
 */
export class GroupDirectoryError extends Error {
  readonly accountId: string;
  constructor(accountId: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.accountId = accountId;
    this.name = "GroupDirectoryError";
  }
}

/**
 * A send waits because a change of the group (maybe a removal) could not be verified yet
 * (its signer's device list could not be fetched). Transient: the group outbox retries.
 */
export class GroupUpdatePendingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GroupUpdatePendingError";
  }
}
