/**
 * The suite can fail: a proxy in front of the real server breaks it in one named way
 * (src/faults/fault-proxy.ts) and the cases that check that behaviour must report failures,
 * while with no fault the same cases pass through the same proxy.
 */
import { describe, expect, it } from "vitest";
import { useTestServer } from "@sealpost/test-support";
import { loadCases } from "../src/cases/load-cases.js";
import { defaultCasesDir } from "../src/runner/paths.js";
import { runServerSuite } from "../src/runner/server-suite.js";
import { startFaultProxy, type Fault } from "../src/faults/fault-proxy.js";
import type { CaseResult } from "../src/runner/server-runner.js";

const server = useTestServer();

/** Which cases each fault must break. */
const mustFail: Record<Exclude<Fault, "none">, string[]> = {
  "wrong-code": ["health/check/unknown-service-not-found", "auth/token/missing", "prekeys/upload/duplicate-key-id", "delivery/send/duplicate-entry"],
  "skip-dedupe": ["delivery/idempotency/retry-returns-original"],
  "drop-message": ["delivery/sequence/strictly-increasing", "delivery/receive/live-after-drained", "delivery/reconnect/unacked-redelivered"],
};
const probed = [...new Set(Object.values(mustFail).flat()), "health/check/server-serving", "delivery/send/stored-with-sequence"];
const cases = loadCases(defaultCasesDir).filter((c) => probed.includes(c.name));

async function runThrough(fault: Fault): Promise<CaseResult[]> {
  const proxy = await startFaultProxy(server.url, fault);
  try {
    return await runServerSuite({ url: proxy.url, targets: [{ stack: "connect-es", protocol: "connect", httpVersion: "1.1", codec: "json" }], cases });
  } finally {
    await proxy.close();
  }
}

const status = (rs: CaseResult[], name: string) => rs.find((r) => r.name === name)?.status;

describe("a broken server is caught", () => {
  it("the proxy without a fault is transparent: every probed case passes", async () => {
    const rs = await runThrough("none");
    expect(rs.filter((r) => r.status !== "pass").map((r) => `${r.name}: ${r.message}`)).toEqual([]);
  });

  for (const [fault, names] of Object.entries(mustFail)) {
    it(`${fault}: the cases that check it fail`, async () => {
      const rs = await runThrough(fault as Fault);
      for (const n of names) expect({ case: n, status: status(rs, n) }).toEqual({ case: n, status: "fail" });
      // The fault is specific: a plain success path still passes.
      expect(status(rs, "health/check/server-serving")).toBe("pass");
    });
  }
});
