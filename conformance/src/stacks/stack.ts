/**
 * A client stack: how the runner reaches a server. Requests and responses cross this
 * boundary as proto3 JSON objects with proto field names, so every stack (connect-es,
 * @grpc/grpc-js, the Python runner) is judged by the same cases.
 */

export type JsonObject = { [key: string]: unknown };

/** gRPC status code names, indexed by number (grpc/doc/statuscodes.md). */
export const codeNames = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

export type CallResult = { code: "OK"; response: JsonObject } | { code: string; message: string };

/** What a server stream yields: a message, or its end with a status. */
export type StreamEvent = { kind: "message"; response: JsonObject } | { kind: "end"; code: string; message: string };

export interface ServerStream {
  /** The next event, or undefined when none arrives within timeoutMs. */
  next(timeoutMs: number): Promise<StreamEvent | undefined>;
  /** Cancels the call (idempotent). */
  close(): void;
}

/** A bidirectional stream: the runner writes messages and reads events. */
export interface BidiStream extends ServerStream {
  send(request: JsonObject): void;
  /** Half-closes the request side. */
  closeSend(): void;
}

export interface CallOptions {
  headers: Record<string, string>;
  timeoutMs: number;
}

export interface Stack {
  /** e.g. "connect-es/grpc-web"; known-failing target globs match it. */
  readonly target: string;
  /** Full method path "pkg.Service/Method" -> whether the stack knows it (loaded schema). */
  hasMethod(path: string): boolean;
  unary(path: string, request: JsonObject, opts: CallOptions): Promise<CallResult>;
  serverStream(path: string, request: JsonObject, opts: CallOptions): ServerStream;
  /**
   * Opens a bidirectional stream; undefined when this stack's protocol cannot carry one
   * (gRPC-Web, Connect over HTTP/1.1): cases that need it are not applicable there.
   */
  bidiStream?(path: string, opts: CallOptions): BidiStream | undefined;
  /** Whether the method streams both ways (the runner opens it with bidiStream). */
  isBidi?(path: string): boolean;
  close(): Promise<void>;
}
