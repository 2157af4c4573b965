/**
 * The value language of the cases: proto3 JSON plus
 *  - `${name.path[0].field}`: a variable (the whole string keeps the value's type; inside a
 *    longer string it is interpolated as text);
 *  - single-key `$function` objects that build bytes, keys and signed structures.
 * Matchers (`$regex`, `$gt`, ...) are left in place for runner/matcher.ts.
 */
import { asBytes, concat, fromBase64, isBytes, toBase64, u32be, utf8 } from "./bytes.js";
import {
  authSignature,
  deviceListChange,
  flipByte,
  kemPrekey,
  oneTimePrekeys,
  random,
  sha256Of,
  sign,
  signedPrekey,
  type AccountContext,
  type Identity,
} from "./fixtures.js";

export type Vars = Map<string, unknown>;

/** Per-run naming: account ids unique per run and per case, so reruns against a persistent
 * server never collide. */
export interface Naming {
  accountId(name: string): string;
}

export class CaseError extends Error {
  override name = "CaseError";
}

export const matcherKeys = new Set([
  "$absent",
  "$present",
  "$any",
  "$regex",
  "$gt",
  "$gte",
  "$lt",
  "$lte",
  "$len",
  "$bytes_len",
  "$ne",
  "$one_of",
  "$contains",
]);

export function lookup(vars: Vars, path: string): unknown {
  const parts = path.match(/[^.[\]]+/g) ?? [];
  if (parts.length === 0) throw new CaseError(`empty variable reference`);
  const head = parts[0] as string;
  if (!vars.has(head)) throw new CaseError(`unknown variable "${head}"`);
  let v: unknown = vars.get(head);
  for (const p of parts.slice(1)) {
    if (v === null || v === undefined) throw new CaseError(`\${${path}}: "${p}" of nothing`);
    v = (v as Record<string, unknown>)[p];
  }
  if (v === undefined) throw new CaseError(`\${${path}} is not set`);
  return v;
}

/** A path into a response, e.g. "stored.entries[0].sequence"; undefined when absent. */
export function getPath(value: unknown, path: string): unknown {
  let v = value;
  for (const p of path.match(/[^.[\]]+/g) ?? []) {
    if (v === null || v === undefined) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

function identityArg(v: unknown, vars: Vars, what: string): Identity {
  const id = typeof v === "string" && vars.has(v) ? vars.get(v) : v;
  if (!id || (id as Identity).kind !== "identity") throw new CaseError(`${what}: not an identity: ${JSON.stringify(v)}`);
  return id as Identity;
}

function accountArg(v: unknown, vars: Vars, what: string): AccountContext {
  const a = typeof v === "string" && vars.has(v) ? vars.get(v) : v;
  if (!a || (a as AccountContext).kind !== "account") throw new CaseError(`${what}: not an account context: ${JSON.stringify(v)}`);
  return a as AccountContext;
}

function num(v: unknown, what: string): number {
  const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n)) throw new CaseError(`${what}: expected a number, got ${JSON.stringify(v)}`);
  return n;
}

type Fn = (arg: unknown, vars: Vars, naming: Naming) => unknown;

const functions: Record<string, Fn> = {
  $random_bytes: (a) => random(num(a, "$random_bytes")),
  $bytes: (a) => {
    const { fill = 0, length } = a as { fill?: number; length: number };
    return new Uint8Array(num(length, "$bytes.length")).fill(fill);
  },
  $hex: (a) => new Uint8Array(Buffer.from(String(a), "hex")),
  $base64: (a) => fromBase64(String(a)),
  $utf8: (a) => utf8(String(a)),
  $concat: (a) => concat(...(a as unknown[]).map((p) => asBytes(p, "$concat"))),
  $u8: (a) => new Uint8Array([num(a, "$u8")]),
  $u32be: (a) => u32be(num(a, "$u32be")),
  $sha256: (a) => sha256Of(a),
  $repeat_string: (a) => {
    const { text, count } = a as { text: string; count: number };
    return String(text).repeat(num(count, "$repeat_string.count"));
  },
  $range: (a) => {
    const { start = 1, count } = a as Record<string, unknown>;
    const from = num(start, "$range.start");
    return Array.from({ length: num(count, "$range.count") }, (_, i) => from + i);
  },
  $add: (a) => (a as unknown[]).reduce<number>((s, x) => s + num(x, "$add"), 0),
  $mul: (a) => (a as unknown[]).reduce<number>((s, x) => s * num(x, "$mul"), 1),
  $account_id: (a, _v, naming) => naming.accountId(String(a)),
  $tamper: (a) => {
    if (typeof a === "string") {
      const i = a.length >> 1;
      return a.slice(0, i) + (a[i] === "A" ? "B" : "A") + a.slice(i + 1);
    }
    return flipByte(asBytes(a, "$tamper"));
  },
  $sign: (a, vars) => {
    const { identity, message } = a as { identity: unknown; message: unknown };
    return sign(identityArg(identity, vars, "$sign.identity"), asBytes(message, "$sign.message"));
  },
  $auth_signature: (a, vars) => {
    const { identity, account_id, device_id, nonce } = a as Record<string, unknown>;
    return authSignature(identityArg(identity, vars, "$auth_signature.identity"), String(account_id), num(device_id, "device_id"), asBytes(nonce, "nonce"));
  },
  $signed_prekey: (a, vars) => {
    const { identity, key_id } = a as Record<string, unknown>;
    return signedPrekey(identityArg(identity, vars, "$signed_prekey.identity"), num(key_id, "key_id"));
  },
  $kem_prekey: (a, vars) => {
    const { identity, key_id } = a as Record<string, unknown>;
    return kemPrekey(identityArg(identity, vars, "$kem_prekey.identity"), num(key_id, "key_id"));
  },
  $one_time_prekeys: (a) => {
    const { count, start_id = 1 } = a as Record<string, unknown>;
    return oneTimePrekeys(num(count, "count"), num(start_id, "start_id"));
  },
  $first_device_list: (a, vars) => deviceList(undefined, a as Record<string, unknown>, vars),
  $next_device_list: (a, vars) => {
    const args = a as Record<string, unknown>;
    return deviceList(accountArg(args.from, vars, "$next_device_list.from"), args, vars);
  },
};

function deviceList(from: AccountContext | undefined, a: Record<string, unknown>, vars: Vars): AccountContext {
  const add = (a.add as Record<string, unknown>[] | undefined) ?? (a.identity ? [{ identity: a.identity, name: a.name, device_id: a.device_id }] : []);
  return deviceListChange({
    from,
    account_id: a.account_id === undefined ? undefined : String(a.account_id),
    add: add.map((d) => ({
      identity: identityArg(d.identity, vars, "device list add.identity"),
      name: d.name === undefined ? undefined : String(d.name),
      device_id: d.device_id === undefined ? undefined : num(d.device_id, "device_id"),
    })),
    remove: ((a.remove as unknown[] | undefined) ?? []).map((x) => num(x, "remove")),
    signer: a.signer === undefined ? undefined : identityArg(a.signer, vars, "signer"),
    signer_device_id: a.signer_device_id === undefined ? undefined : num(a.signer_device_id, "signer_device_id"),
    version: a.version === undefined ? undefined : num(a.version, "version"),
    previous_hash: a.previous_hash === undefined ? undefined : asBytes(a.previous_hash, "previous_hash"),
    next_device_id: a.next_device_id === undefined ? undefined : num(a.next_device_id, "next_device_id"),
    bad_signature: a.bad_signature === true,
  });
}

export const functionNames = new Set(Object.keys(functions));

export function evaluate(value: unknown, vars: Vars, naming: Naming): unknown {
  if (typeof value === "string") {
    const whole = /^\$\{([^}]+)\}$/.exec(value);
    if (whole) return lookup(vars, whole[1].trim());
    return value.replace(/\$\{([^}]+)\}/g, (_, p: string) => String(lookup(vars, p.trim())));
  }
  if (Array.isArray(value)) return value.map((v) => evaluate(v, vars, naming));
  if (value && typeof value === "object" && !isBytes(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0].startsWith("$")) {
      const fn = functions[keys[0]];
      const arg = evaluate((value as Record<string, unknown>)[keys[0]], vars, naming);
      if (fn) return fn(arg, vars, naming);
      if (matcherKeys.has(keys[0])) return { [keys[0]]: arg };
      throw new CaseError(`unknown function ${keys[0]}`);
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = evaluate(v, vars, naming);
    return out;
  }
  return value;
}

/** An evaluated value as proto3 JSON for a request: bytes as base64, contexts refused. */
export function toWire(value: unknown, path = "request"): unknown {
  if (isBytes(value)) return toBase64(value);
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map((v, i) => toWire(v, `${path}[${i}]`));
  if (value && typeof value === "object") {
    const kind = (value as { kind?: unknown }).kind;
    if (kind === "identity" || kind === "account") {
      throw new CaseError(`${path}: an ${kind} context cannot go on the wire; use one of its fields (e.g. \${x.signed})`);
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toWire(v, `${path}.${k}`);
    return out;
  }
  return value;
}
