/**
 * Start-up steps wait out a JetStream election (timeouts, "temporarily unavailable") but
 * fail at once on real errors, and give up after their bound.
 */
import { describe, expect, it } from "vitest";
import { whenJetStreamReady } from "../src/nats/connection.js";

describe("whenJetStreamReady", () => {
  it("retries transient JetStream errors until the step succeeds", async () => {
    let calls = 0;
    const result = await whenJetStreamReady(async () => {
      calls++;
      if (calls === 1) throw new Error("TimeoutError: timeout");
      if (calls === 2) throw new Error("JetStream system temporarily unavailable");
      return "ready";
    });
    expect(result).toBe("ready");
    expect(calls).toBe(3);
  });

  it("does not retry a real error (e.g. a partition-count mismatch)", async () => {
    let calls = 0;
    const err = await whenJetStreamReady(async () => {
      calls++;
      throw new Error("mailbox partitions mismatch: stored 4, configured 8");
    }).catch((e) => e);
    expect(err.message).toMatch(/mismatch/);
    expect(calls).toBe(1);
  });

  it("gives up after its bound and reports the last error", async () => {
    let calls = 0;
    const err = await whenJetStreamReady(async () => {
      calls++;
      throw new Error("timeout");
    }, 300).catch((e) => e);
    expect(err.message).toBe("timeout");
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThan(5);
  });
});
