/**
 * Server mode: runs cases against one server through one client stack and reports one result
 * per case. A case stops at its first failing step; streams it opened are closed afterwards.
 */
import { randomBytes } from "node:crypto";
import type {
  AuthenticateStep,
  Case,
  CreateAccountStep,
  Expect,
  LinkDeviceStep,
  Step,
  VerifyLogConsistencyStep,
  VerifyLogInclusionStep,
  VerifySenderCertificateStep,
} from "../cases/case-format.js";
import { senderCertificateProblem } from "./sender-certificate-check.js";
import { logConsistencyProblem, logInclusionProblem, treeHeadProblem } from "./transparency-check.js";
import { stepKind } from "../cases/load-cases.js";
import type { KnownFailing } from "../cases/known-failing.js";
import type { BidiStream, CallResult, JsonObject, ServerStream, Stack } from "../stacks/stack.js";
import { deviceListChange, newIdentity, authSignature, type AccountContext, type Identity } from "./fixtures.js";
import { match } from "./matcher.js";
import { CaseError, evaluate, getPath, lookup, toWire, type Naming, type Vars } from "./values.js";
import { asBytes, toBase64 } from "./bytes.js";

/** not-applicable: the case needs what this target's protocol cannot carry (a bidi stream over gRPC-Web or HTTP/1.1). */
export type CaseStatus = "pass" | "fail" | "known-fail" | "unexpected-pass" | "not-applicable";

export interface CaseResult {
  name: string;
  target: string;
  status: CaseStatus;
  /** Failure detail (also kept for known failures). */
  message?: string;
  /** 1-based index of the failing step (nested repeat steps count inside their parent). */
  step?: number;
  durationMs: number;
  checks: string;
  file?: string;
}

/** A device the suite has authenticated, as a case variable. */
export interface DeviceContext {
  kind: "device";
  account_id: string;
  device_id: number;
  address: { account_id: string; device_id: number };
  identity: Identity;
  token?: string;
}

/** The case needs something this target cannot do (reported as not applicable, not failed). */
class NotApplicable extends Error {
  override name = "NotApplicable";
}

class StepFailure extends Error {
  override name = "StepFailure";
}

const DEFAULT_CALL_TIMEOUT_MS = 10_000;
const DEFAULT_RECEIVE_TIMEOUT_MS = 5_000;

export interface RunOptions {
  knownFailing?: KnownFailing;
  /** Called after each case (progress output). */
  onResult?: (r: CaseResult) => void;
}

export async function runCases(stack: Stack, cases: Case[], opts: RunOptions = {}): Promise<CaseResult[]> {
  const runId = randomBytes(4).toString("hex");
  const results: CaseResult[] = [];
  let n = 0;
  for (const c of cases) {
    const caseNo = ++n;
    const naming: Naming = { accountId: (name) => `cf${runId}${caseNo.toString(36)}-${name}`.toLowerCase().slice(0, 64) };
    const started = Date.now();
    const outcome = await new CaseExecution(stack, naming).run(c.steps);
    const known = opts.knownFailing?.matches(c.name, stack.target) ?? false;
    const failed = outcome !== undefined;
    const status: CaseStatus = outcome?.notApplicable ? "not-applicable" : failed ? (known ? "known-fail" : "fail") : known ? "unexpected-pass" : "pass";
    const result: CaseResult = {
      name: c.name,
      target: stack.target,
      status,
      durationMs: Date.now() - started,
      checks: c.checks,
      file: c.file,
      ...(outcome ?? {}),
      ...(status === "unexpected-pass" ? { message: "listed in known-failing but passes: remove it from the list" } : {}),
    };
    results.push(result);
    opts.onResult?.(result);
  }
  return results;
}

class CaseExecution {
  readonly vars: Vars = new Map();
  readonly streams = new Map<string, ServerStream>();
  stepNo = 0;

  constructor(
    readonly stack: Stack,
    readonly naming: Naming,
  ) {}

  async run(steps: Step[]): Promise<{ message: string; step: number; notApplicable?: boolean } | undefined> {
    try {
      await this.steps(steps);
      return undefined;
    } catch (err) {
      const e = err as Error;
      if (e instanceof NotApplicable) return { message: e.message, step: this.stepNo, notApplicable: true };
      const prefix = e instanceof StepFailure ? "" : e instanceof CaseError ? "case error: " : `runner error: `;
      return { message: prefix + e.message, step: this.stepNo };
    } finally {
      for (const s of this.streams.values()) s.close();
    }
  }

  async steps(steps: Step[]): Promise<void> {
    for (const step of steps) {
      this.stepNo++;
      await this.step(step);
    }
  }

  eval(v: unknown): unknown {
    return evaluate(v, this.vars, this.naming);
  }

  async step(step: Step): Promise<void> {
    const s = step as unknown as Record<string, unknown>;
    switch (stepKind(step)) {
      case "call": {
        const res = await this.unary(String(s.call), s.request, s.as, s.headers, s.timeout_ms);
        this.check(res, (s.expect as Expect) ?? {}, `${s.call}`);
        this.bind(res, s.bind as Record<string, string> | undefined);
        return;
      }
      case "open": {
        const name = String(s.open);
        this.streams.get(name)?.close();
        const path = String(s.call);
        if (!this.stack.hasMethod(path)) throw new CaseError(`method ${path} is not in the schema`);
        const opts = { headers: this.headers(s.as, s.headers), timeoutMs: 0 };
        if (this.stack.isBidi?.(path)) {
          // Bidirectional: opened empty; `send` steps write to it.
          const bidi = this.stack.bidiStream?.(path, opts);
          if (!bidi) throw new NotApplicable(`${this.stack.target} cannot carry a bidirectional stream (${path})`);
          this.streams.set(name, bidi);
          return;
        }
        const request = toWire(this.eval(s.request ?? {})) as JsonObject;
        this.streams.set(name, this.stack.serverStream(path, request, opts));
        return;
      }
      case "send": {
        const st = this.stream(String(s.send)) as Partial<BidiStream>;
        if (!st.send) throw new CaseError(`stream "${s.send}" is not bidirectional`);
        if (s.close_send) st.closeSend!();
        else st.send(toWire(this.eval(s.request ?? {})) as JsonObject);
        return;
      }
      case "receive": {
        const name = String(s.receive);
        const ev = await this.stream(name).next(Number(s.timeout_ms ?? DEFAULT_RECEIVE_TIMEOUT_MS));
        if (!ev) throw new StepFailure(`stream ${name}: no message within ${s.timeout_ms ?? DEFAULT_RECEIVE_TIMEOUT_MS} ms`);
        if (ev.kind === "end") throw new StepFailure(`stream ${name}: ended (${ev.code}${ev.message ? `: ${ev.message}` : ""}) while a message was expected`);
        const expected = this.eval((s.expect as { response?: unknown } | undefined)?.response);
        const diffs = match(expected, ev.response);
        if (diffs.length) throw new StepFailure(`stream ${name}: ${diffs.join("; ")}`);
        this.bind({ code: "OK", response: ev.response }, s.bind as Record<string, string> | undefined);
        return;
      }
      case "quiet": {
        const name = String(s.quiet);
        const ev = await this.stream(name).next(Number(s.ms));
        if (ev?.kind === "message") throw new StepFailure(`stream ${name}: expected nothing for ${s.ms} ms, got ${JSON.stringify(ev.response).slice(0, 200)}`);
        if (ev?.kind === "end") throw new StepFailure(`stream ${name}: expected it to stay open, it ended (${ev.code}: ${ev.message})`);
        return;
      }
      case "end": {
        const name = String(s.end);
        const timeout = Number(s.timeout_ms ?? DEFAULT_RECEIVE_TIMEOUT_MS);
        const deadline = Date.now() + timeout;
        for (;;) {
          const ev = await this.stream(name).next(Math.max(1, deadline - Date.now()));
          if (!ev) throw new StepFailure(`stream ${name}: did not end within ${timeout} ms`);
          if (ev.kind === "message") throw new StepFailure(`stream ${name}: expected the end, got a message ${JSON.stringify(ev.response).slice(0, 200)}`);
          this.check({ code: ev.code, message: ev.message }, (s.expect as Expect) ?? {}, `stream ${name} end`);
          return;
        }
      }
      case "close": {
        this.stream(String(s.close)).close();
        this.streams.delete(String(s.close));
        return;
      }
      case "let": {
        for (const [k, v] of Object.entries(s.let as Record<string, unknown>)) this.vars.set(k, this.eval(v));
        return;
      }
      case "identity": {
        this.vars.set(String(s.identity), newIdentity(s.one_time_prekeys === undefined ? 5 : Number(s.one_time_prekeys)));
        return;
      }
      case "create_account":
        return this.createAccount(step as CreateAccountStep);
      case "authenticate":
        return this.authenticate((step as AuthenticateStep).authenticate);
      case "link_device":
        return this.linkDevice(step as LinkDeviceStep);
      case "repeat": {
        const r = s.repeat as { times: number; var?: string; steps: Step[] };
        const times = Number(this.eval(r.times));
        for (let i = 0; i < times; i++) {
          this.vars.set(r.var ?? "i", i);
          await this.steps(r.steps);
        }
        return;
      }
      case "sleep":
        await new Promise((r) => setTimeout(r, Number(s.sleep)));
        return;
      case "verify_sender_certificate":
        return this.verifySenderCertificate((step as VerifySenderCertificateStep).verify_sender_certificate);
      case "verify_log_inclusion": {
        const v = (step as VerifyLogInclusionStep).verify_log_inclusion;
        const problem = logInclusionProblem(this.eval(v.response), String(this.eval(v.account_id)), this.eval(v.log_key));
        if (problem) throw new StepFailure(`key transparency: ${problem}`);
        return;
      }
      case "verify_log_consistency": {
        const v = (step as VerifyLogConsistencyStep).verify_log_consistency;
        const [first, second, key] = [this.eval(v.first), this.eval(v.second), this.eval(v.log_key)];
        const problem = treeHeadProblem(first, key) ?? treeHeadProblem(second, key) ?? logConsistencyProblem(first, second, this.eval(v.proof));
        if (problem) throw new StepFailure(`key transparency: ${problem}`);
        return;
      }
    }
  }

  verifySenderCertificate(v: VerifySenderCertificateStep["verify_sender_certificate"]): void {
    const identity = this.vars.get(v.identity) as Identity | undefined;
    if (identity?.kind !== "identity") throw new CaseError(`verify_sender_certificate: ${v.identity} is not an identity`);
    const problem = senderCertificateProblem(this.eval(v.certificate), this.eval(v.keys), {
      accountId: String(this.eval(v.account_id)),
      deviceId: Number(this.eval(v.device_id)),
      identityKey: identity.signing_key,
      nowMs: Date.now(),
    });
    if (problem) throw new StepFailure(`sender certificate: ${problem}`);
  }

  stream(name: string): ServerStream {
    const st = this.streams.get(name);
    if (!st) throw new CaseError(`no open stream "${name}"`);
    return st;
  }

  headers(as: unknown, extra: unknown): Record<string, string> {
    const headers: Record<string, string> = {};
    if (as !== undefined && as !== "none") {
      const ctx = (typeof as === "string" && this.vars.has(as) ? this.vars.get(as) : this.eval(as)) as Partial<DeviceContext> | undefined;
      if (!ctx || typeof ctx !== "object" || typeof ctx.token !== "string") throw new CaseError(`as: ${JSON.stringify(as)} is not an authenticated device`);
      headers.authorization = `Bearer ${ctx.token}`;
    }
    for (const [k, v] of Object.entries((this.eval(extra ?? {}) as Record<string, unknown>) ?? {})) headers[k.toLowerCase()] = String(v);
    return headers;
  }

  async unary(path: string, request: unknown, as: unknown, headers: unknown, timeoutMs: unknown): Promise<CallResult> {
    if (!this.stack.hasMethod(path)) throw new CaseError(`method ${path} is not in the schema`);
    const wire = toWire(this.eval(request ?? {})) as JsonObject;
    try {
      return await this.stack.unary(path, wire, { headers: this.headers(as, headers), timeoutMs: Number(timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS) });
    } catch (err) {
      throw new CaseError(`${path}: the request could not be sent: ${(err as Error).message}`);
    }
  }

  check(res: CallResult, expect: Expect, what: string): void {
    const codes = [expect.code ?? "OK"].flat().map((c) => String(c).toUpperCase());
    const detail = "message" in res && res.message ? `: ${res.message}` : "";
    if (!codes.includes(res.code)) throw new StepFailure(`${what}: expected ${codes.join(" or ")}, got ${res.code}${detail}`);
    if (expect.message && res.code !== "OK" && !new RegExp(expect.message, "i").test((res as { message: string }).message)) {
      throw new StepFailure(`${what}: error message ${JSON.stringify((res as { message: string }).message)} does not match /${expect.message}/`);
    }
    if (expect.response !== undefined && res.code === "OK") {
      const diffs = match(this.eval(expect.response), (res as { response: JsonObject }).response);
      if (diffs.length) throw new StepFailure(`${what}: ${diffs.join("; ")}`);
    }
  }

  bind(res: CallResult, bind: Record<string, string> | undefined): void {
    if (!bind) return;
    if (res.code !== "OK") throw new CaseError(`bind: the call failed, nothing to bind`);
    for (const [name, path] of Object.entries(bind)) {
      const v = path === "." ? (res as { response: JsonObject }).response : getPath((res as { response: JsonObject }).response, path);
      if (v === undefined) throw new StepFailure(`bind ${name}: response has no ${path}`);
      this.vars.set(name, v);
    }
  }

  /** A macro's call must succeed; its failure names the macro. */
  async must(path: string, request: unknown, as: unknown, what: string): Promise<JsonObject> {
    const res = await this.unary(path, request, as, undefined, undefined);
    if (res.code !== "OK") throw new StepFailure(`${what}: ${path} failed with ${res.code}: ${(res as { message: string }).message}`);
    return (res as { response: JsonObject }).response;
  }

  identity(name: string | undefined): Identity {
    if (name && this.vars.has(name)) return lookup(this.vars, name) as Identity;
    const id = newIdentity();
    if (name) this.vars.set(name, id);
    return id;
  }

  async createAccount(step: CreateAccountStep): Promise<void> {
    const a = step.create_account;
    const identity = this.identity(a.identity);
    const list = deviceListChange({ account_id: this.naming.accountId(a.account), add: [{ identity, name: a.name ?? "phone" }] });
    const res = await this.must(
      "sealpost.directory.v1.DirectoryService/CreateAccount",
      { device_list: list.signed, signed_prekey: identity.signed_prekey, kem_prekey: identity.kem_prekey, one_time_prekeys: identity.one_time_prekeys },
      "none",
      "create_account",
    );
    const deviceId = Number((res.device as JsonObject | undefined)?.device_id ?? list.added_device_id);
    this.vars.set(a.account, list);
    this.vars.set(a.as, device(list.account_id, deviceId, identity));
    await this.authenticate(a.as);
  }

  async authenticate(name: string): Promise<void> {
    const ctx = lookup(this.vars, name) as DeviceContext;
    const ch = await this.must("sealpost.directory.v1.DirectoryService/GetAuthChallenge", { device: ctx.address }, "none", `authenticate ${name}`);
    const nonce = asBytes(ch.nonce, "nonce");
    const signature = authSignature(ctx.identity, ctx.account_id, ctx.device_id, nonce);
    const res = await this.must(
      "sealpost.directory.v1.DirectoryService/Authenticate",
      { device: ctx.address, nonce: toBase64(nonce), signature },
      "none",
      `authenticate ${name}`,
    );
    this.vars.set(name, { ...ctx, token: String(res.token) });
  }

  async linkDevice(step: LinkDeviceStep): Promise<void> {
    const a = step.link_device;
    const from = lookup(this.vars, a.account) as AccountContext;
    const signer = lookup(this.vars, a.signer) as DeviceContext;
    const identity = this.identity(a.identity);
    const next = deviceListChange({ from, add: [{ identity, name: a.name ?? "laptop" }], signer: signer.identity, signer_device_id: signer.device_id });
    const res = await this.must("sealpost.directory.v1.DirectoryService/LinkDevice", { device_list: next.signed }, a.signer, "link_device");
    const deviceId = Number((res.device as JsonObject | undefined)?.device_id ?? next.added_device_id);
    this.vars.set(a.account, next);
    this.vars.set(a.as, device(next.account_id, deviceId, identity));
    await this.authenticate(a.as);
    await this.must(
      "sealpost.directory.v1.DirectoryService/UploadPrekeys",
      { signed_prekey: identity.signed_prekey, kem_prekey: identity.kem_prekey, one_time_prekeys: identity.one_time_prekeys },
      a.as,
      "link_device (upload prekeys)",
    );
  }
}

function device(accountId: string, deviceId: number, identity: Identity): DeviceContext {
  return { kind: "device", account_id: accountId, device_id: deviceId, address: { account_id: accountId, device_id: deviceId }, identity };
}
