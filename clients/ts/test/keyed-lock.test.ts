import { describe, expect, it } from "vitest";
import { KeyedLock } from "../src/util/keyed-lock.js";

const tick = () => new Promise((r) => setTimeout(r, 1));

describe("KeyedLock", () => {
  it("runs of one key never overlap and keep call order; other keys overlap; failures do not block", async () => {
    const locks = new KeyedLock();
    const log: string[] = [];
    let inA = 0;
    const a = (name: string, fail = false) =>
      locks.run("a", async () => {
        expect(inA++).toBe(0);
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
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect(log.filter((x) => x.startsWith("b"))).toEqual(["b+", "b-"]);
    expect(log.filter((x) => !x.startsWith("b"))).toEqual(["1+", "1-", "2+", "2-", "3+", "3-"]);
    expect(log.indexOf("b+")).toBeLessThan(log.indexOf("1-")); // b did not wait for a
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
