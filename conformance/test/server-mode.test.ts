/**
 * The suite against our own server (real nats-server, real ports): every case on Connect
 * (JSON over HTTP/1.1 and binary over h2), gRPC and gRPC-Web through connect-es, and on
 * gRPC through @grpc/grpc-js. Cases listed in known-failing.txt may fail; nothing else may,
 * and a listed case that passes fails the run (the list must shrink as features land).
 */
import { describe, expect, it } from "vitest";
import { useTestServer } from "@sealpost/test-support";
import { loadCases } from "../src/cases/load-cases.js";
import { KnownFailing } from "../src/cases/known-failing.js";
import { defaultCasesDir, defaultKnownFailing } from "../src/runner/paths.js";
import { runServerSuite, type TargetSpec } from "../src/runner/server-suite.js";
import { isRunOk, summaryTable } from "../src/report/summary-table.js";

const server = useTestServer();

const targets: TargetSpec[] = [
  { stack: "connect-es", protocol: "connect", httpVersion: "1.1", codec: "json" },
  { stack: "connect-es", protocol: "connect", httpVersion: "2", codec: "proto" },
  { stack: "connect-es", protocol: "grpc" },
  { stack: "connect-es", protocol: "grpc-web" },
  { stack: "grpc-js", protocol: "grpc" },
];

const cases = loadCases(defaultCasesDir);
const knownFailing = KnownFailing.load(defaultKnownFailing);

// One test per target, run concurrently (they share only the server), each with its own
// budget, so a slow shared CI machine does not turn five targets into one timeout.
describe.concurrent("server mode against the sealpost server", () => {
  for (const target of targets) {
    const name = `${target.stack}/${target.protocol}${target.codec ? `+${target.codec}` : ""}${target.httpVersion ? ` HTTP/${target.httpVersion}` : ""}`;
    it(`passes every case: ${name}`, { timeout: 110_000 }, async () => {
      const results = await runServerSuite({ url: server.url, targets: [target], cases, knownFailing });
      if (!isRunOk(results) || process.env.SEALPOST_CONFORMANCE_VERBOSE) console.log(summaryTable(results));
      expect(results).toHaveLength(cases.length);
      expect(results.filter((r) => r.status === "fail" || r.status === "unexpected-pass").map((r) => `${r.target} ${r.name}: ${r.message}`)).toEqual([]);
    });
  }
});
