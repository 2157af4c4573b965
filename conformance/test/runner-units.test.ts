/** Unit tests of the runner's pieces: matching, known-failing globs, case loading, JUnit. */
import { describe, expect, it } from "vitest";
import { match } from "../src/runner/matcher.js";
import { KnownFailing, globMatch } from "../src/cases/known-failing.js";
import { CaseFormatError, loadCases, parseCaseFile } from "../src/cases/load-cases.js";
import { evaluate } from "../src/runner/values.js";
import { junitXml } from "../src/report/junit-xml.js";
import { defaultCasesDir, defaultVectorsDir } from "../src/runner/paths.js";
import { verifyEd25519 } from "../src/runner/ed25519-rule.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const naming = { accountId: (n: string) => `t-${n}` };

describe("matcher", () => {
  it("matches partially, numerically across int64 strings, and bytes against base64", () => {
    expect(match({ a: 5, b: { c: "x" } }, { a: "5", b: { c: "x", d: 1 }, e: 2 })).toEqual([]);
    expect(match(new Uint8Array([1, 2]), "AQI=")).toEqual([]);
    expect(match({ a: 5 }, { a: "6" })).toHaveLength(1);
    expect(match([1, 2], [1])).toHaveLength(1);
  });
  it("treats a missing field as its proto3 default", () => {
    expect(match({ duplicate: false, n: 0, list: [] }, {})).toEqual([]);
    expect(match({ n: 1 }, {})).toHaveLength(1);
  });
  it("has matchers", () => {
    expect(match({ $gt: 3 }, "4")).toEqual([]);
    expect(match({ $gt: 4 }, "4")).toHaveLength(1);
    expect(match({ $absent: true }, undefined)).toEqual([]);
    expect(match({ $absent: true }, {})).toHaveLength(1);
    expect(match({ $regex: "^ab" }, "ABC")).toEqual([]);
    expect(match({ $bytes_len: 2 }, "AQI=")).toEqual([]);
    expect(match({ $ne: 3 }, 3)).toHaveLength(1);
    expect(match({ $one_of: [1, 2] }, 2)).toEqual([]);
    expect(match({ $contains: [{ id: 2 }] }, [{ id: 1 }, { id: 2 }])).toEqual([]);
  });
});

describe("values", () => {
  it("substitutes variables with their type and interpolates inside strings", () => {
    const vars = new Map<string, unknown>([["x", { n: 5, list: [{ s: "a" }] }]]);
    expect(evaluate("${x.n}", vars, naming)).toBe(5);
    expect(evaluate("n=${x.n} s=${x.list[0].s}", vars, naming)).toBe("n=5 s=a");
    expect(evaluate({ $add: ["${x.n}", 2] }, vars, naming)).toBe(7);
    expect(evaluate({ $account_id: "bob" }, vars, naming)).toBe("t-bob");
    expect(evaluate({ $gt: "${x.n}" }, vars, naming)).toEqual({ $gt: 5 });
    expect(() => evaluate("${nope}", vars, naming)).toThrow(/unknown variable/);
    expect(() => evaluate({ $nope: 1 }, vars, naming)).toThrow(/unknown function/);
  });
});

describe("known-failing", () => {
  it("globs over case names, optionally per target", () => {
    expect(globMatch("delivery/**", "delivery/a/b")).toBe(true);
    expect(globMatch("delivery/*", "delivery/a/b")).toBe(false);
    const kf = KnownFailing.parse("# c\ndelivery/ack/*   # trailing\nhealth/** @ grpc-js/*\n");
    expect(kf.matches("delivery/ack/x", "connect-es/grpc")).toBe(true);
    expect(kf.matches("health/check/a", "connect-es/grpc")).toBe(false);
    expect(kf.matches("health/check/a", "grpc-js/grpc")).toBe(true);
  });
});

describe("cases", () => {
  it("every shipped case parses, names its behaviour and is unique", () => {
    const cases = loadCases(defaultCasesDir);
    expect(cases.length).toBeGreaterThan(80);
    for (const c of cases) expect(c.checks.length).toBeGreaterThan(20);
  });
  it("a typo in a step is refused loudly", () => {
    expect(() =>
      parseCaseFile("cases:\n  - name: a/b\n    checks: checks something here\n    steps:\n      - call: x/Y\n        expct: {}\n", "t.yaml"),
    ).toThrow(CaseFormatError);
  });
});

describe("junit", () => {
  it("reports failures, known failures as skipped, and escapes", () => {
    const xml = junitXml([
      { name: "a/<b>", target: "t", status: "fail", durationMs: 5, checks: "c", message: 'x "y" & z' },
      { name: "a/c", target: "t", status: "known-fail", durationMs: 1, checks: "c", message: "m" },
      { name: "a/d", target: "t", status: "pass", durationMs: 1, checks: "c" },
    ]);
    expect(xml).toContain('tests="3" failures="1" skipped="1"');
    expect(xml).toContain("a/&lt;b&gt;");
    expect(xml).toContain("x &quot;y&quot; &amp; z");
    expect(xml).toContain("<skipped");
  });
});

describe("the runner's Ed25519 verification (servers' tree heads and certificates)", () => {
  it("applies the protocol's rule: accepts exactly the cases of ed25519-rule.json", () => {
    const v = JSON.parse(readFileSync(join(defaultVectorsDir, "ed25519-rule.json"), "utf8"));
    const b = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
    for (const c of v.cases) expect(verifyEd25519(b(c.signature), b(v.message), b(c.public_key)), c.name).toBe(c.valid);
  });
});
