/**
 * Reads every YAML file of a cases directory, checks its shape (so a typo in a case fails
 * loudly instead of silently checking nothing) and returns the cases in a stable order.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parse } from "yaml";
import type { Case, CaseFile, Step } from "./case-format.js";

export class CaseFormatError extends Error {
  override name = "CaseFormatError";
}

const stepKeys: Record<string, string[]> = {
  open: ["open", "call", "request", "as", "headers", "timeout_ms"],
  call: ["call", "request", "expect", "bind", "as", "headers", "timeout_ms"],
  receive: ["receive", "expect", "bind", "timeout_ms"],
  send: ["send", "request", "close_send"],
  quiet: ["quiet", "ms"],
  end: ["end", "expect", "timeout_ms"],
  close: ["close"],
  let: ["let"],
  identity: ["identity", "one_time_prekeys"],
  create_account: ["create_account"],
  authenticate: ["authenticate"],
  link_device: ["link_device"],
  repeat: ["repeat"],
  sleep: ["sleep"],
  verify_sender_certificate: ["verify_sender_certificate"],
  verify_log_inclusion: ["verify_log_inclusion"],
  verify_log_consistency: ["verify_log_consistency"],
};

/** The kind of a step: its first recognised key (`open` wins over `call`). */
export function stepKind(step: Step): string {
  const s = step as unknown as Record<string, unknown>;
  for (const k of Object.keys(stepKeys)) if (k in s) return k;
  throw new CaseFormatError(`step has no known kind: ${JSON.stringify(step)}`);
}

function checkSteps(steps: unknown, where: string): void {
  if (!Array.isArray(steps) || steps.length === 0) throw new CaseFormatError(`${where}: steps must be a non-empty list`);
  steps.forEach((step, i) => {
    if (step === null || typeof step !== "object") throw new CaseFormatError(`${where} step ${i + 1}: not a mapping`);
    const kind = stepKind(step as Step);
    for (const key of Object.keys(step)) {
      if (!stepKeys[kind].includes(key)) throw new CaseFormatError(`${where} step ${i + 1} (${kind}): unknown key "${key}"`);
    }
    const s = step as Record<string, unknown>;
    if (s.expect && typeof s.expect === "object") {
      for (const key of Object.keys(s.expect as object)) {
        if (!["code", "message", "response"].includes(key)) throw new CaseFormatError(`${where} step ${i + 1}: unknown expect key "${key}"`);
      }
    }
    if (kind === "repeat") checkSteps((s.repeat as { steps?: unknown })?.steps, `${where} step ${i + 1} (repeat)`);
  });
}

export function parseCaseFile(text: string, file: string): Case[] {
  const doc = parse(text) as CaseFile;
  if (!doc || typeof doc !== "object" || !Array.isArray(doc.cases)) throw new CaseFormatError(`${file}: expected a mapping with "cases: [...]"`);
  return doc.cases.map((c, i) => {
    const where = `${file} case ${i + 1}${c?.name ? ` (${c.name})` : ""}`;
    if (typeof c.name !== "string" || !/^[a-z0-9][a-z0-9_./-]*$/.test(c.name)) throw new CaseFormatError(`${where}: name must be a lower-case path`);
    if (typeof c.checks !== "string" || c.checks.length < 10) throw new CaseFormatError(`${where}: "checks" must say which behaviour the case checks`);
    checkSteps(c.steps, where);
    return { ...c, file };
  });
}

/** Every case of every *.yaml / *.yml file in dir, sorted by file then position. */
export function loadCases(dir: string): Case[] {
  const files = readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
  const cases = files.flatMap((f) => parseCaseFile(readFileSync(join(dir, f), "utf8"), relative(process.cwd(), join(dir, f))));
  const seen = new Set<string>();
  for (const c of cases) {
    if (seen.has(c.name)) throw new CaseFormatError(`duplicate case name ${c.name}`);
    seen.add(c.name);
  }
  return cases;
}
