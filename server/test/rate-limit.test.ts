/** The one token-bucket limiter every service uses (sends, claims, uploads, challenges, attachments). */
import { describe, expect, it } from "vitest";
import { RateLimiter } from "../src/rate-limit.js";

describe("RateLimiter", () => {
  it("starts full, refills per minute, says when to retry, and refuses everything at a zero rate", () => {
    let t = 0;
    const r = new RateLimiter(3, () => t);
    expect([r.take("k"), r.take("k"), r.take("k"), r.take("k")]).toEqual([true, true, true, false]);
    expect(r.retryAfterSeconds("k")).toBe(20);
    expect(r.retryAfterSeconds("unknown")).toBe(60);
    t += 20_000;
    expect(r.take("k")).toBe(true);
    expect(r.take("k")).toBe(false);
    const zero = new RateLimiter(0, () => t);
    expect(zero.take("k")).toBe(false);
  });

  it("prunes full buckets by itself once it holds more than pruneAbove keys", () => {
    let t = 0;
    const r = new RateLimiter(2, () => t, 10);
    for (let i = 0; i < 10; i++) r.take(`k${i}`);
    expect(r.size).toBe(10);
    t += 60_000; // every bucket has refilled
    r.take("drained");
    r.take("drained");
    r.take("new"); // 12th key: the full ones go
    expect(r.size).toBe(2);
    expect(r.take("drained")).toBe(false);
  });
});
