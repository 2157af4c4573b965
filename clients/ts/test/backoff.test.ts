/** The one retry policy of the client: exponential backoff with full jitter, and retry() on it. */
import { describe, expect, it } from "vitest";
import { Backoff, retry } from "../src/util/backoff.js";

describe("Backoff and retry", () => {
  it("delays grow to the cap with full jitter, and reset starts over", () => {
    const top = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
    expect([1, 2, 3, 4, 5].map(() => top.next())).toEqual([99, 199, 399, 799, 999]);
    top.reset();
    expect(top.next()).toBe(99);
    expect(new Backoff({ baseMs: 100, random: () => 0 }).next()).toBe(10); // never a busy loop
  });

  it("retries what is retryable, up to the attempts, and stops at once otherwise", async () => {
    let calls = 0;
    const flaky = () => (++calls < 3 ? Promise.reject(new Error("transient")) : Promise.resolve("ok"));
    expect(await retry(flaky, { attempts: 5, retryable: () => true, backoff: { baseMs: 1, maxMs: 2 } })).toBe("ok");
    expect(calls).toBe(3);

    calls = 0;
    await expect(
      retry(() => (calls++, Promise.reject(new Error("always"))), { attempts: 3, retryable: () => true, backoff: { baseMs: 1, maxMs: 2 } }),
    ).rejects.toThrow("always");
    expect(calls).toBe(3);

    calls = 0;
    await expect(retry(() => (calls++, Promise.reject(new TypeError("bug"))), { attempts: 3, retryable: (e) => !(e instanceof TypeError) })).rejects.toThrow(
      "bug",
    );
    expect(calls).toBe(1);

    const ac = new AbortController();
    ac.abort();
    calls = 0;
    await expect(retry(() => (calls++, Promise.reject(new Error("offline"))), { attempts: 10, retryable: () => true, signal: ac.signal })).rejects.toThrow(
      "offline",
    );
    expect(calls).toBe(1);
  });
});
