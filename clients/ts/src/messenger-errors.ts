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
