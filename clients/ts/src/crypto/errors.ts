/**
 * Typed errors. Every failure of crypto or protocol code is one of these, so callers can
 * tell "retry after refreshing keys" from "drop this message" without parsing strings.
 * Messages never contain key material or plaintext.
 */
export type SealpostErrorCode =
  | "invalid_key"
  | "invalid_signature"
  | "invalid_message"
  | "decryption_failed"
  | "duplicate_message"
  | "too_far_ahead"
  | "no_session"
  | "untrusted_identity"
  | "missing_prekey"
  | "body_mismatch"
  | "address_mismatch"
  | "unsupported_version";

/** Base class: `code` is stable and machine-readable. */
export class SealpostCryptoError extends Error {
  readonly code: SealpostErrorCode;
  constructor(code: SealpostErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A public or private key has the wrong length or is a low-order / invalid point. */
export class InvalidKeyError extends SealpostCryptoError {
  constructor(message: string) {
    super("invalid_key", message);
  }
}

/** A signature over a key, bundle or list did not verify. */
export class InvalidSignatureError extends SealpostCryptoError {
  constructor(message: string) {
    super("invalid_signature", message);
  }
}

/** A message is malformed (does not parse, wrong field sizes). */
export class InvalidMessageError extends SealpostCryptoError {
  constructor(message: string) {
    super("invalid_message", message);
  }
}

/** Authentication failed: tampered or forged ciphertext, header or key. Session untouched. */
export class DecryptionError extends SealpostCryptoError {
  constructor(message: string) {
    super("decryption_failed", message);
  }
}

/** The message key was already used (a replay or a duplicate delivered twice). */
export class DuplicateMessageError extends SealpostCryptoError {
  constructor(message: string) {
    super("duplicate_message", message);
  }
}

/** The message is further ahead in its chain than the skipped-key window allows. */
export class TooFarAheadError extends SealpostCryptoError {
  constructor(message: string) {
    super("too_far_ahead", message);
  }
}

/** No session with the device and no key bundle was given to start one. */
export class NoSessionError extends SealpostCryptoError {
  constructor(message: string) {
    super("no_session", message);
  }
}

/** The sender's identity key is unknown or differs from the one in its device list. */
export class UntrustedIdentityError extends SealpostCryptoError {
  constructor(message: string) {
    super("untrusted_identity", message);
  }
}

/** A prekey named by a prekey message is not (or no longer) in the store. */
export class MissingPrekeyError extends SealpostCryptoError {
  constructor(message: string) {
    super("missing_prekey", message);
  }
}

/** The shared body does not match the entry's body_sha256 or fails to decrypt. */
export class BodyMismatchError extends SealpostCryptoError {
  constructor(message: string) {
    super("body_mismatch", message);
  }
}

/** The entry names a different sender or recipient than the transport said. */
export class AddressMismatchError extends SealpostCryptoError {
  constructor(message: string) {
    super("address_mismatch", message);
  }
}

/** A version field is not 1. */
export class UnsupportedVersionError extends SealpostCryptoError {
  constructor(message: string) {
    super("unsupported_version", message);
  }
}
