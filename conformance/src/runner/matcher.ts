/**
 * Partial matching of a response (proto3 JSON, proto field names) against an expectation.
 *
 * - Objects: every expected key must match; extra actual keys are ignored.
 * - Arrays: same length, element by element (use `$contains` for a subset).
 * - A missing field matches its proto3 default (0, "0", "", false, []), because JSON
 *   encoders may omit defaults.
 * - Numbers compare numerically with 64-bit integers rendered as strings.
 * - Expected bytes compare with the decoded base64 of the actual string.
 * - Matchers: $absent, $present, $any, $regex, $gt, $gte, $lt, $lte, $len, $bytes_len,
 *   $ne, $one_of, $contains.
 */
import { equalBytes, fromBase64, isBytes, toBase64 } from "./bytes.js";
import { matcherKeys } from "./values.js";

function numeric(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  return undefined;
}

function isDefault(v: unknown): boolean {
  return v === 0 || v === "0" || v === "" || v === false || (Array.isArray(v) && v.length === 0) || (isBytes(v) && v.length === 0);
}

function show(v: unknown): string {
  if (isBytes(v)) return `bytes(${v.length}) ${toBase64(v).slice(0, 24)}`;
  const s = JSON.stringify(v);
  return s === undefined ? "nothing" : s.length > 160 ? s.slice(0, 157) + "..." : s;
}

/** Returns the mismatches, each "path: expected X, got Y"; empty when it matches. */
export function match(expected: unknown, actual: unknown, path = "response"): string[] {
  if (expected === undefined) return [];
  if (expected && typeof expected === "object" && !isBytes(expected) && !Array.isArray(expected)) {
    const keys = Object.keys(expected);
    if (keys.length === 1 && matcherKeys.has(keys[0])) return matcher(keys[0], (expected as Record<string, unknown>)[keys[0]], actual, path);
  }
  if (actual === undefined || actual === null) {
    if (isDefault(expected)) return [];
    return [`${path}: expected ${show(expected)}, got nothing`];
  }
  if (isBytes(expected)) {
    if (typeof actual !== "string") return [`${path}: expected bytes, got ${show(actual)}`];
    return equalBytes(expected, fromBase64(actual)) ? [] : [`${path}: expected ${show(expected)}, got ${show(fromBase64(actual))}`];
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${path}: expected a list, got ${show(actual)}`];
    if (actual.length !== expected.length) return [`${path}: expected ${expected.length} items, got ${actual.length}: ${show(actual)}`];
    return expected.flatMap((e, i) => match(e, actual[i], `${path}[${i}]`));
  }
  if (expected && typeof expected === "object") {
    if (typeof actual !== "object") return [`${path}: expected an object, got ${show(actual)}`];
    return Object.entries(expected).flatMap(([k, e]) => match(e, (actual as Record<string, unknown>)[k], `${path}.${k}`));
  }
  const en = numeric(expected);
  const an = numeric(actual);
  if (en !== undefined && an !== undefined) return en === an ? [] : [`${path}: expected ${show(expected)}, got ${show(actual)}`];
  return expected === actual ? [] : [`${path}: expected ${show(expected)}, got ${show(actual)}`];
}

function compare(op: string, arg: unknown, actual: unknown, path: string): string[] {
  const a = numeric(actual ?? 0);
  const b = numeric(arg);
  if (a === undefined || b === undefined) return [`${path}: ${op} needs numbers, got ${show(actual)} and ${show(arg)}`];
  const ok = op === "$gt" ? a > b : op === "$gte" ? a >= b : op === "$lt" ? a < b : a <= b;
  return ok ? [] : [`${path}: expected ${op.slice(1)} ${b}, got ${a}`];
}

function matcher(op: string, arg: unknown, actual: unknown, path: string): string[] {
  switch (op) {
    case "$any":
      return [];
    case "$absent":
      return actual === undefined || actual === null ? [] : [`${path}: expected absent, got ${show(actual)}`];
    case "$present":
      return actual === undefined || actual === null ? [`${path}: expected a value, got nothing`] : [];
    case "$regex":
      return typeof actual === "string" && new RegExp(String(arg), "i").test(actual) ? [] : [`${path}: expected to match /${arg}/, got ${show(actual)}`];
    case "$gt":
    case "$gte":
    case "$lt":
    case "$lte":
      return compare(op, arg, actual, path);
    case "$len": {
      const n = Array.isArray(actual) || typeof actual === "string" ? actual.length : actual === undefined ? 0 : -1;
      return n === numeric(arg) ? [] : [`${path}: expected length ${arg}, got ${n < 0 ? show(actual) : n}`];
    }
    case "$bytes_len": {
      const n = typeof actual === "string" ? fromBase64(actual).length : actual === undefined ? 0 : -1;
      return n === numeric(arg) ? [] : [`${path}: expected ${arg} bytes, got ${n < 0 ? show(actual) : n}`];
    }
    case "$ne":
      return match(arg, actual, path).length > 0 ? [] : [`${path}: expected anything but ${show(arg)}`];
    case "$one_of":
      return (arg as unknown[]).some((e) => match(e, actual, path).length === 0) ? [] : [`${path}: expected one of ${show(arg)}, got ${show(actual)}`];
    case "$contains": {
      if (!Array.isArray(actual)) return [`${path}: expected a list, got ${show(actual)}`];
      return (arg as unknown[]).flatMap((e) =>
        actual.some((a, i) => match(e, a, `${path}[${i}]`).length === 0) ? [] : [`${path}: no item matches ${show(e)}`],
      );
    }
  }
  return [`${path}: unknown matcher ${op}`];
}
