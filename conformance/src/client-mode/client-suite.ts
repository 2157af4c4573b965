/**
 * Client mode end to end: start the client under test, run the vector cases and the session
 * scenarios, report one result per case (target "client:<implementation>").
 */
import { create } from "@bufbuild/protobuf";
import { GetInfoRequestSchema } from "@sealpost/gen/sealpost/conformance/v1/client_harness_pb.js";
import { globMatch, type KnownFailing } from "../cases/known-failing.js";
import type { CaseResult, CaseStatus } from "../runner/server-runner.js";
import { ClientCheckFailure, expectOk, type ClientCase } from "./client-case.js";
import { InProcessHarness, ProcessHarness, type Harness } from "./harness-client.js";
import { scenarioCases } from "./scenario-cases.js";
import { vectorCases } from "./vector-cases.js";

export interface ClientSuiteOptions {
  command: string;
  casesDir: string;
  vectorsDir: string;
  filter?: string[];
  knownFailing?: KnownFailing;
  onResult?: (r: CaseResult) => void;
  /** Per-request timeout. */
  timeoutMs?: number;
}

export function clientCases(casesDir: string, vectorsDir: string): ClientCase[] {
  return [...vectorCases(vectorsDir), ...scenarioCases(casesDir)];
}

export async function runClientSuite(o: ClientSuiteOptions): Promise<CaseResult[]> {
  const cases = clientCases(o.casesDir, o.vectorsDir).filter((c) => !o.filter?.length || o.filter.some((g) => globMatch(g, c.name)));
  const sut: Harness = new ProcessHarness(o.command, o.timeoutMs);
  const ref = new InProcessHarness();
  const results: CaseResult[] = [];
  let target = "client";
  try {
    try {
      const info = await expectOk(sut, { case: "getInfo", value: create(GetInfoRequestSchema) }, "getInfo");
      target = `client:${info.implementation.split(" ")[0] || "unnamed"}`;
    } catch (err) {
      // Still run the cases: each will report the same failure, which is the honest result.
      process.stderr.write(`sealpost-conformance: get_info failed: ${(err as Error).message}\n`);
    }
    for (const c of cases) {
      const started = Date.now();
      let message: string | undefined;
      try {
        await c.run({ sut, ref });
      } catch (err) {
        message = err instanceof ClientCheckFailure ? err.message : `error: ${(err as Error).message}`;
      }
      const known = o.knownFailing?.matches(c.name, target) ?? false;
      const status: CaseStatus = message !== undefined ? (known ? "known-fail" : "fail") : known ? "unexpected-pass" : "pass";
      const r: CaseResult = {
        name: c.name,
        target,
        status,
        durationMs: Date.now() - started,
        checks: c.checks,
        file: c.file,
        message: status === "unexpected-pass" ? "listed in known-failing but passes: remove it from the list" : message,
      };
      results.push(r);
      o.onResult?.(r);
    }
  } finally {
    await sut.close();
    await ref.close();
  }
  return results;
}
