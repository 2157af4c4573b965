/**
 * Structured logs: one JSON object per line on stderr. Callers pass ids, sizes and codes,
 * never message contents, tokens or keys; `redact` below drops fields whose names suggest
 * secrets in case one slips through.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

const secretField = /^(token|secret|signature|nonce|body|entry|ciphertext|plaintext|content|data)$|(key|secret|token|password)$/i;

function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Uint8Array) out[k] = `<${v.length} bytes>`;
    else if (secretField.test(k) && typeof v === "string") out[k] = "<redacted>";
    else if (v instanceof Error) out[k] = v.message;
    else out[k] = v;
  }
  return out;
}

export function createLogger(
  level: LogLevel = "info",
  write: (line: string) => void = (line) => process.stderr.write(line + "\n"),
  base: Record<string, unknown> = {},
  now: () => number = Date.now,
): Logger {
  const min = levelRank[level];
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (levelRank[lvl] < min) return;
    write(JSON.stringify({ t: new Date(now()).toISOString(), level: lvl, msg, ...base, ...redact(fields ?? {}) }));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(level, write, { ...base, ...redact(fields) }, now),
  };
}

/** A logger that discards everything (tests that do not inspect logs). */
export const silentLogger: Logger = createLogger("error", () => {});
