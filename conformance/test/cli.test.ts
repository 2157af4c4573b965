/**
 * The command line as an outside team uses it: `sealpost-conformance --help`, server mode
 * against a URL with a JUnit file, exit status 0 on success and 1 on failure, usage errors 2.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "@sealpost/server";

const bin = fileURLToPath(new URL("../bin/sealpost-conformance.js", import.meta.url));
// Asynchronous: the server under test lives in this process and must keep answering.
function run(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

let nats: TestNats;
let server: RunningServer;
let work: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "sealpost-cli-"));
  nats = await startTestNats();
  server = await startTestServer(nats.url);
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("sealpost-conformance CLI", () => {
  it("--help explains both modes", async () => {
    const r = await run(["--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/sealpost-conformance server --url/);
    expect(r.stdout).toMatch(/sealpost-conformance client --command/);
    expect(r.stdout).toMatch(/--known-failing/);
  });

  it("a usage error exits 2 and says what is wrong", async () => {
    const r = await run(["server", "--protocol", "carrier-pigeon", "--url", "http://127.0.0.1:1"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown protocol "carrier-pigeon"/);
  });

  it("server mode writes a summary and JUnit XML and exits 0 when every case passes", async () => {
    const junit = join(work, "junit.xml");
    const r = await run(["server", "--url", server.url, "--protocol", "connect,grpc", "--filter", "health/**", "--junit", junit, "--quiet"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/connect-es\/connect\+json\/h1: 6 passed, 0 failed/);
    expect(r.stdout).toMatch(/grpc-js\/grpc: 6 passed, 0 failed/);
    const xml = readFileSync(junit, "utf8");
    expect(xml).toContain('<testsuite name="connect-es/grpc" tests="6" failures="0"');
    expect(xml).toContain('name="health/check/server-serving"');
  });

  it("exits 1 when a case fails, and a known-failing entry turns that into a pass", async () => {
    const cases = join(work, "cases");
    mkdirSync(cases, { recursive: true });
    writeFileSync(
      join(cases, "wrong.yaml"),
      `suite: wrong\ncases:\n  - name: wrong/expects-not-serving\n    checks: A case that expects the wrong status, to see the suite fail.\n    steps:\n      - call: grpc.health.v1.Health/Check\n        request: { service: "" }\n        expect: { response: { status: NOT_SERVING } }\n`,
    );
    const failing = await run(["server", "--url", server.url, "--protocol", "connect", "--stack", "connect-es", "--cases", cases, "--quiet"]);
    expect(failing.status).toBe(1);
    expect(failing.stdout).toMatch(/response\.status: expected "NOT_SERVING", got "SERVING"/);
    const list = join(work, "known-failing.txt");
    writeFileSync(list, "# demo\nwrong/** @ connect-es/**\n");
    const listed = await run([
      "server",
      "--url",
      server.url,
      "--protocol",
      "connect",
      "--stack",
      "connect-es",
      "--cases",
      cases,
      "--known-failing",
      list,
      "--quiet",
    ]);
    expect(listed.status).toBe(0);
    expect(listed.stdout).toMatch(/1 known failing/);
  });
});
