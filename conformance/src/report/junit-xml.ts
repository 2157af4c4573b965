/**
 * JUnit XML, the format CI systems read: one <testsuite> per target, one <testcase> per
 * case. Known failures are <skipped> with the reason, so a CI dashboard shows them without
 * failing; unexpected passes are failures.
 */
import type { CaseResult } from "../runner/server-runner.js";

function esc(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

export function junitXml(results: CaseResult[], suiteName = "sealpost-conformance"): string {
  const targets = [...new Set(results.map((r) => r.target))];
  const out = [`<?xml version="1.0" encoding="UTF-8"?>`];
  const failures = results.filter((r) => r.status === "fail" || r.status === "unexpected-pass").length;
  const skipped = results.filter((r) => r.status === "known-fail").length;
  const total = results.reduce((s, r) => s + r.durationMs, 0) / 1000;
  out.push(`<testsuites name="${esc(suiteName)}" tests="${results.length}" failures="${failures}" skipped="${skipped}" time="${total.toFixed(3)}">`);
  for (const t of targets) {
    const rs = results.filter((r) => r.target === t);
    const f = rs.filter((r) => r.status === "fail" || r.status === "unexpected-pass").length;
    const sk = rs.filter((r) => r.status === "known-fail").length;
    const time = rs.reduce((s, r) => s + r.durationMs, 0) / 1000;
    out.push(`  <testsuite name="${esc(t)}" tests="${rs.length}" failures="${f}" errors="0" skipped="${sk}" time="${time.toFixed(3)}">`);
    for (const r of rs) {
      const open = `    <testcase classname="${esc(t)}" name="${esc(r.name)}" time="${(r.durationMs / 1000).toFixed(3)}"`;
      const where = r.step ? ` (step ${r.step})` : "";
      if (r.status === "pass") out.push(`${open}/>`);
      else if (r.status === "known-fail")
        out.push(`${open}>`, `      <skipped message="${esc(`known failing${where}: ${r.message ?? ""}`)}"/>`, `    </testcase>`);
      else if (r.status === "not-applicable")
        out.push(`${open}>`, `      <skipped message="${esc(`not applicable: ${r.message ?? ""}`)}"/>`, `    </testcase>`);
      else
        out.push(
          `${open}>`,
          `      <failure message="${esc((r.message ?? "").slice(0, 500))}" type="${r.status}">${esc(`${r.checks}\n${r.file ?? ""}${where}\n${r.message ?? ""}`)}</failure>`,
          `    </testcase>`,
        );
    }
    out.push(`  </testsuite>`);
  }
  out.push(`</testsuites>`, "");
  return out.join("\n");
}
