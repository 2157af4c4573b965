/**
 * CallStop, the light stand-in for an AbortSignal on streams served natively: its
 * listeners run once, in order, on the first abort; removed or late listeners never run; a
 * listener that throws does not keep the others from running (the error surfaces as
 * uncaught, as an EventTarget's would).
 */
import { describe, expect, it } from "vitest";
import { CallStop } from "../src/delivery/call-stop.js";

describe("CallStop", () => {
  it("runs each listener once on the first abort, skips removed and late ones", () => {
    const stop = new CallStop();
    const seen: string[] = [];
    const a = () => seen.push("a");
    const b = () => seen.push("b");
    const c = () => seen.push("c");
    stop.addEventListener("abort", a);
    stop.addEventListener("abort", b, { once: true });
    stop.addEventListener("abort", c);
    stop.removeEventListener("abort", b);
    expect(stop.aborted).toBe(false);
    stop.abort();
    stop.abort();
    expect(stop.aborted).toBe(true);
    stop.addEventListener("abort", () => seen.push("late"));
    expect(seen).toEqual(["a", "c"]);
  });

  it("keeps running listeners after one throws, and reports that error as uncaught", async () => {
    const stop = new CallStop();
    const seen: string[] = [];
    const uncaught = new Promise<unknown>((resolve) => {
      const listeners = process.listeners("uncaughtException");
      process.removeAllListeners("uncaughtException");
      process.once("uncaughtException", (err) => {
        for (const l of listeners) process.on("uncaughtException", l);
        resolve(err);
      });
    });
    stop.addEventListener("abort", () => {
      throw new Error("listener failed");
    });
    stop.addEventListener("abort", () => seen.push("after"));
    stop.abort();
    expect(seen).toEqual(["after"]);
    expect(((await uncaught) as Error).message).toBe("listener failed");
  });
});
