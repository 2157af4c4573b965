/**
 * What really happened to messages a command queued: the CLI says `sent` only when the
 * server stored the message for every device, `failed` with the reason when it never will
 * be, and `queued` when it is still waiting (the server unreachable) after the timeout.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Messenger } from "../messenger/messenger.js";

export type Outcome =
  /** sealed: the recipient's copies went sealed; unsealed: why a message meant to go sealed did not (the server refused the key). */
  | { kind: "sent"; devices?: number; sealed?: boolean; unsealed?: string }
  | { kind: "failed"; reason: string }
  | { kind: "queued"; lastError?: string; lastRetry?: string };

/** Exit codes: 0 done, 1 failed, 2 usage, 75 queued for later (EX_TEMPFAIL). */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_QUEUED = 75;

/** A command's failure: printed as `sealpost: <message>` with this exit code. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/**
 * Watches the Messenger's events from its creation (create it before queueing, so a fast
 * outcome is not missed) and reports offline periods as they happen.
 */
export class OutcomeTracker {
  private readonly outcomes = new Map<string, Outcome>();
  private readonly fallbacks = new Map<string, string>();
  private readonly waiters = new Map<string, (o: Outcome) => void>();
  private lastError: string | undefined;
  /** Why the last attempt of each message failed (retried): said when it ends up queued. */
  private readonly retries = new Map<string, string>();
  private revoked = false;
  private readonly off: () => void;

  constructor(m: Messenger, progress: (line: string) => void) {
    this.off = m.on((e) => {
      if (e.type === "sent") this.settle(e.messageId, { kind: "sent", devices: e.devices, sealed: e.sealed, unsealed: this.fallbacks.get(e.messageId) });
      else if (e.type === "sealed-fallback") this.fallbacks.set(e.messageId, e.reason);
      else if (e.type === "send-retry") this.retries.set(e.messageId, e.reason);
      else if (e.type === "send-failed") this.settle(e.messageId, { kind: "failed", reason: e.reason });
      else if (e.type === "connection" && e.state === "offline" && e.error && e.error !== this.lastError) {
        this.lastError = e.error;
        progress(`(server unreachable: ${e.error}; retrying)`);
      } else if (e.type === "device-revoked" && e.self) {
        this.revoked = true;
        for (const id of [...this.waiters.keys()]) this.settle(id, { kind: "failed", reason: "this device was revoked from its account" });
      }
    });
  }

  private settle(id: string, o: Outcome): void {
    this.outcomes.set(id, o);
    const w = this.waiters.get(id);
    this.waiters.delete(id);
    w?.(o);
  }

  /** The outcome of message `id` (hex), or queued after `timeoutMs`. */
  wait(id: string, timeoutMs: number): Promise<Outcome> {
    const known = this.outcomes.get(id);
    if (known) return Promise.resolve(known);
    if (this.revoked) return Promise.resolve({ kind: "failed", reason: "this device was revoked from its account" });
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish({ kind: "queued", lastError: this.lastError, lastRetry: this.retries.get(id) }), timeoutMs);
      const finish = (o: Outcome) => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve(o);
      };
      this.waiters.set(id, finish);
    });
  }

  close(): void {
    this.off();
  }
}

/** Prints an outcome and turns it into the command's result (throws for failed and queued). */
export function report(o: Outcome, id: string, what: string, out: (line: string) => void): void {
  switch (o.kind) {
    case "sent": {
      const notes = [
        o.devices !== undefined ? `stored for ${o.devices} device${o.devices === 1 ? "" : "s"}` : "",
        o.sealed ? "sealed: the server was not told the sender" : "",
        o.unsealed ? `not sealed: ${o.unsealed}` : "",
      ].filter(Boolean);
      out(`sent ${id}${notes.length ? ` (${notes.join("; ")})` : ""}`);
      return;
    }
    case "failed":
      throw new CliError(EXIT_FAILED, `${what} ${id} failed: ${o.reason}`);
    case "queued":
      throw new CliError(
        EXIT_QUEUED,
        `queued ${id}; not sent yet${o.lastError ? ` (server unreachable: ${o.lastError})` : o.lastRetry ? ` (last attempt: ${o.lastRetry})` : ""}. It stays in this device's outbox and goes out the next time sealpost runs online here (e.g. \`sealpost listen\`).`,
      );
  }
}

/** NOT_FOUND from the directory: the account does not exist. */
export function isUnknownAccount(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.NotFound;
}

/** `{ value }` of `p`, or undefined once `ms` passed (the work goes on in the background). */
export async function within<T>(p: Promise<T>, ms: number): Promise<{ value: T } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p.then((value) => ({ value })), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
