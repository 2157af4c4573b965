/**
 * Typed errors of the Messenger layer (crypto errors stay SealpostCryptoError, transport
 * errors stay ConnectError). `code` is stable and machine-readable; messages never hold
 * plaintext or keys.
 */
export type MessengerErrorCode =
  | "not_initialized"
  | "already_initialized"
  | "link_timeout"
  | "link_code_invalid"
  | "device_revoked"
  | "unknown_device"
  | "attachment_corrupt"
  | "directory_untrusted"
  | "store_damaged"
  | "certificate_invalid"
  | "closed";

export class MessengerError extends Error {
  readonly code: MessengerErrorCode;
  constructor(code: MessengerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "MessengerError";
  }
}

/**
 * The MessengerError behind `err`, if any: connect-es wraps errors thrown in interceptors
 * (such as a failed re-authentication) into a ConnectError whose cause is the original.
 */
export function messengerErrorOf(err: unknown): MessengerError | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof MessengerError) return e;
  }
  return undefined;
}

/**
 * A record file of the local store that cannot be read back (truncated, edited, or written
 * by something else). Writes are atomic, so a crash of ours cannot cause it; the message
 * names the file and what to do, and the Messenger stops rather than guess.
 */
export function storeDamaged(file: string, cause: unknown): MessengerError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new MessengerError(
    "store_damaged",
    `store file ${file} is damaged (${why}); restore it from a backup, or delete it if it is a session, channel or receive-state file (a new session starts with the next message; deleting identity or account files means setting up this device again)`,
    { cause },
  );
}
