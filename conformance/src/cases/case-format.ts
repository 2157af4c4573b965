/**
 * The case format: what a YAML file under conformance/cases/ holds once parsed. Cases are
 * data so any runner (this one, the Python one, an outside team's) can execute them; the
 * step language is documented in docs/CONFORMANCE.md and kept deliberately small.
 *
 * Values inside requests are proto3 JSON (proto field names, snake_case) extended with
 * `${var.path}` references and single-key `$function` objects (see runner/values.ts).
 */

/** One YAML file. */
export interface CaseFile {
  /** Short name of the file's area, e.g. "directory-lifecycle". */
  suite: string;
  /** Optional prose. */
  description?: string;
  cases: Case[];
}

export interface Case {
  /** Hierarchical id, e.g. "delivery/idempotency/retry-stores-nothing-new". Globs in the
   * known-failing list match it. */
  name: string;
  /** The behaviour this case checks, in one sentence, quoting the schema where it can. */
  checks: string;
  /** Where the contract is written (proto file and message/RPC), for reports. */
  spec?: string;
  steps: Step[];
  /** The file the case came from (set by the loader). */
  file?: string;
}

/** Expected outcome of a call or a stream end. */
export interface Expect {
  /** gRPC code name (OK, NOT_FOUND, ...) or a list of acceptable ones. Default OK. */
  code?: string | string[];
  /** Case-insensitive regular expression the error message must match. */
  message?: string;
  /** Partial match of the response (proto3 JSON, proto field names); see runner/matcher.ts. */
  response?: unknown;
}

export type Step =
  | CallStep
  | OpenStep
  | ReceiveStep
  | SendStep
  | QuietStep
  | EndStep
  | CloseStep
  | LetStep
  | IdentityStep
  | CreateAccountStep
  | AuthenticateStep
  | LinkDeviceStep
  | RepeatStep
  | SleepStep
  | VerifySenderCertificateStep
  | VerifyLogInclusionStep
  | VerifyLogConsistencyStep;

/** `as` names a device context (a variable with a token) or is an expression giving one;
 * `none` sends no authorization header. `headers` adds raw headers (wins over `as`). */
export interface CallContext {
  as?: unknown;
  headers?: Record<string, unknown>;
  timeout_ms?: number;
}

/** Unary call: `call: pkg.Service/Method`. */
export interface CallStep extends CallContext {
  call: string;
  request?: unknown;
  expect?: Expect;
  /** Variables to bind from the response: name -> path ("entries[0].sequence"). */
  bind?: Record<string, string>;
}

/** Opens a server stream (with `request`) or a bidirectional one (empty; `send` writes) under a name. */
export interface OpenStep extends CallContext {
  open: string;
  call: string;
  request?: unknown;
}

/** Writes one message to an open bidirectional stream (or, with close_send, half-closes it). */
export interface SendStep {
  send: string;
  request?: unknown;
  close_send?: boolean;
}

/** Waits for the next message of a stream and matches it. */
export interface ReceiveStep {
  receive: string;
  expect?: { response?: unknown };
  bind?: Record<string, string>;
  timeout_ms?: number;
}

/** Asserts that a stream delivers nothing for `ms` (flow control, no duplicates). */
export interface QuietStep {
  quiet: string;
  ms: number;
}

/** Waits for a stream to end and checks its status. */
export interface EndStep {
  end: string;
  expect?: Expect;
  timeout_ms?: number;
}

/** Cancels a stream from the client side. */
export interface CloseStep {
  close: string;
}

/** Binds variables to evaluated expressions. */
export interface LetStep {
  let: Record<string, unknown>;
}

/** Generates a device identity with prekeys: `identity: a1`. */
export interface IdentityStep {
  identity: string;
  one_time_prekeys?: number;
}

/** Macro: a fresh account with one device, authenticated. Binds `account` (account context),
 * `as` (device context) and `identity` (generated when not bound yet). */
export interface CreateAccountStep {
  create_account: { account: string; as: string; identity?: string; name?: string };
}

/** Macro: GetAuthChallenge + Authenticate for a device context; refreshes its token. */
export interface AuthenticateStep {
  authenticate: string;
}

/** Macro: links a new device (signed by `signer`), authenticates it and uploads its prekeys. */
export interface LinkDeviceStep {
  link_device: { account: string; as: string; signer: string; identity?: string; name?: string };
}

/** Runs steps `times` times with `var` bound to 0..times-1. */
export interface RepeatStep {
  repeat: { times: number; var?: string; steps: Step[] };
}

/** Waits (use sparingly; only where the contract is about time). */
export interface SleepStep {
  sleep: number;
}

/**
 * Checks a SenderCertificate (proto3 JSON) as a recipient would (PROTOCOL.md, "Sender
 * certificates"): the signature by one of `keys` (GetCertificateKeysResponse.keys) over the
 * label and the body, not expired, naming `account_id`, `device_id` and the identity's key.
 */
export interface VerifySenderCertificateStep {
  verify_sender_certificate: { certificate: unknown; keys: unknown; account_id: unknown; device_id: unknown; identity: string };
}

/** A GetDeviceList answer whose current list is proven in the key transparency log (transparency-check.ts). */
export interface VerifyLogInclusionStep {
  verify_log_inclusion: { response: unknown; account_id: unknown; log_key: unknown };
}

/** Two signed tree heads (each checked against the log key) and a consistency proof between them. */
export interface VerifyLogConsistencyStep {
  verify_log_consistency: { first: unknown; second: unknown; proof: unknown; log_key: unknown };
}

export const stepKinds = [
  "call",
  "open",
  "receive",
  "quiet",
  "end",
  "close",
  "let",
  "identity",
  "create_account",
  "authenticate",
  "link_device",
  "repeat",
  "sleep",
  "verify_sender_certificate",
  "verify_log_inclusion",
  "verify_log_consistency",
] as const;
