/**
 * The human summary: one row per case, one column per target, then totals. A run passes
 * when nothing is "FAIL" or "XPASS" (a known failure that now passes must leave the list).
 */
import type { CaseResult, CaseStatus } from "../runner/server-runner.js";

const cell: Record<CaseStatus, string> = { pass: "pass", fail: "FAIL", "known-fail": "known-fail", "unexpected-pass": "XPASS", "not-applicable": "n/a" };

export function isRunOk(results: CaseResult[]): boolean {
  return results.every((r) => r.status === "pass" || r.status === "known-fail" || r.status === "not-applicable");
}

export function summaryTable(results: CaseResult[]): string {
  const targets = [...new Set(results.map((r) => r.target))];
  const names = [...new Set(results.map((r) => r.name))];
  const byKey = new Map(results.map((r) => [`${r.target}\u0000${r.name}`, r]));
  const nameWidth = Math.max(4, ...names.map((n) => n.length));
  const widths = targets.map((t) => Math.max(t.length, 10));
  const row = (first: string, cols: string[]) => `${first.padEnd(nameWidth)} | ${cols.map((c, i) => c.padEnd(widths[i])).join(" | ")}`;
  const lines = [row("case", targets), `${"-".repeat(nameWidth)}-+-${widths.map((w) => "-".repeat(w)).join("-+-")}`];
  for (const n of names)
    lines.push(
      row(
        n,
        targets.map((t) => {
          const r = byKey.get(`${t}\u0000${n}`);
          return r ? cell[r.status] : "-";
        }),
      ),
    );
  lines.push("");
  for (const t of targets) {
    const rs = results.filter((r) => r.target === t);
    const count = (s: CaseStatus) => rs.filter((r) => r.status === s).length;
    lines.push(
      `${t}: ${count("pass")} passed, ${count("fail")} failed, ${count("known-fail")} known failing, ${count("unexpected-pass")} unexpectedly passed, ${count("not-applicable")} not applicable`,
    );
  }
  const problems = results.filter((r) => r.status === "fail" || r.status === "unexpected-pass");
  if (problems.length) {
    lines.push("", "Failures:");
    for (const r of problems) lines.push(`  ${r.target} ${r.name}${r.step ? ` (step ${r.step})` : ""}: ${r.message}`);
  }
  return lines.join("\n");
}
