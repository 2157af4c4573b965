import { describe, expect, it } from "vitest";
import { KeyedLock } from "../src/util/keyed-lock.js";

const tick = () => new Promise((r) => setTimeout(r, 1));

describe("KeyedLock", () => {
  /** Three runs of key "a" (the second fails) and one of key "b", started together. */
  async function runTogether() {
    const locks = new KeyedLock();
    const log: string[] = [];
    let inA = 0;
    let overlapped = false;
    const a = (name: string, fail = false) =>
      locks.run("a", async () => {
        if (inA++ !== 0) overlapped = true;
        log.push(`${name}+`);
        await tick();
        log.push(`${name}-`);
        inA--;
        if (fail) throw new Error(name);
        return name;
      });
    const b = locks.run("b", async () => {
      log.push("b+");
      await tick();
      log.push("b-");
    });
    const results = await Promise.allSettled([a("1"), a("2", true), a("3"), b]);
    return { locks, log, results, overlapped };
  }

  it("runs of one key never overlap and keep call order", async () => {
    const { log, overlapped } = await runTogether();
    expect(overlapped).toBe(false);
    expect(log.filter((x) => !x.startsWith("b"))).toEqual(["1+", "1-", "2+", "2-", "3+", "3-"]);
  });

  it("runs of other keys overlap", async () => {
    const { log } = await runTogether();
    expect(log.filter((x) => x.startsWith("b"))).toEqual(["b+", "b-"]);
    expect(log.indexOf("b+")).toBeLessThan(log.indexOf("1-")); // b did not wait for a
  });

  it("a failure rejects its own run only and does not block the key", async () => {
    const { locks, results } = await runTogether();
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled"]);
    await tick();
    expect(locks.size).toBe(0);
  });

  it("a function that throws synchronously rejects its run and frees the key", async () => {
    const locks = new KeyedLock();
    await expect(
      locks.run("k", () => {
        throw new Error("sync");
      }),
    ).rejects.toThrow("sync");
    await expect(locks.run("k", async () => 1)).resolves.toBe(1);
  });
});
