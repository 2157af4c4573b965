/**
 * Client mode: our TypeScript client, started as a child process speaking the harness
 * protocol, passes every vector and session case; a deliberately broken variant fails the
 * cases that check what it breaks; a client that dies is reported, not hung on.
 */
import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { runClientSuite } from "../src/client-mode/client-suite.js";
import { defaultClientCasesDir, defaultVectorsDir } from "../src/runner/paths.js";
import { summaryTable } from "../src/report/summary-table.js";

const tsx = fileURLToPath(new URL("../../node_modules/.bin/tsx", import.meta.url));
const tsClient = fileURLToPath(new URL("../src/client-under-test/ts-client-main.ts", import.meta.url));
const brokenClient = fileURLToPath(new URL("./support/broken-ts-client.ts", import.meta.url));

describe("client mode", () => {
  it("the TypeScript client passes every client case", { timeout: 60_000 }, async () => {
    const results = await runClientSuite({ command: `${tsx} ${tsClient}`, casesDir: defaultClientCasesDir, vectorsDir: defaultVectorsDir });
    const bad = results.filter((r) => r.status !== "pass");
    if (bad.length) console.log(summaryTable(results));
    expect(bad.map((r) => `${r.name}: ${r.message}`)).toEqual([]);
    expect(results.some((r) => r.name.startsWith("client/vectors/"))).toBe(true);
    expect(results.some((r) => r.name.startsWith("client/session/"))).toBe(true);
    expect(
      results.filter((r) => /^client\/vectors\/(sealed-entry|sender-certificate|transparency)\//.test(r.name)).map((r) => `${r.name} ${r.status}`),
    ).toEqual([
      "client/vectors/sealed-entry/open pass",
      "client/vectors/sealed-entry/refused pass",
      "client/vectors/sender-certificate/valid pass",
      "client/vectors/sender-certificate/refused pass",
      "client/vectors/transparency/included pass",
      "client/vectors/transparency/refused pass",
    ]);
    expect(results.filter((r) => r.name.startsWith("client/vectors/ed25519-rule/")).map((r) => `${r.name} ${r.status}`)).toEqual([
      "client/vectors/ed25519-rule/valid pass",
      "client/vectors/ed25519-rule/small-order-key pass",
      "client/vectors/ed25519-rule/mixed-order-R pass",
      "client/vectors/ed25519-rule/S-not-reduced pass",
      "client/vectors/ed25519-rule/non-canonical-key pass",
    ]);
    expect(results[0].target).toBe("client:sealpost-ts");
  });

  it("a broken client fails the cases that check what it breaks", { timeout: 60_000 }, async () => {
    const results = await runClientSuite({ command: `${tsx} ${brokenClient}`, casesDir: defaultClientCasesDir, vectorsDir: defaultVectorsDir });
    const status = (n: string) => results.find((r) => r.name === n)?.status;
    expect(status("client/vectors/primitives/ed25519/0")).toBe("fail");
    expect(status("client/vectors/key-signatures/signatures")).toBe("fail");
    expect(status("client/session/ref-to-sut-first-message")).toBe("fail");
    expect(status("client/vectors/primitives/x25519/0")).toBe("pass");
    expect(status("client/vectors/sender-certificate/refused")).toBe("fail");
    expect(status("client/vectors/sender-certificate/valid")).toBe("pass");
    expect(status("client/vectors/transparency/refused")).toBe("fail");
    expect(status("client/vectors/transparency/included")).toBe("pass");
    expect(status("client/vectors/ed25519-rule/valid")).toBe("pass");
    expect(status("client/vectors/ed25519-rule/small-order-key")).toBe("fail");
    expect(status("client/vectors/ed25519-rule/mixed-order-R")).toBe("fail");
  });

  it("a client that exits is reported as failing, not waited for", { timeout: 30_000 }, async () => {
    const results = await runClientSuite({
      command: "exit 3",
      casesDir: defaultClientCasesDir,
      vectorsDir: defaultVectorsDir,
      filter: ["client/vectors/primitives/sha2/*"],
    });
    expect(results.length).toBeGreaterThan(0);
    expect(results.every((r) => r.status === "fail" && /exited/.test(r.message ?? ""))).toBe(true);
  });
});
