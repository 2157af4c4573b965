/**
 * The second-language client: the Python runner (grpcio + stubs generated from proto/ by
 * Debian's protoc and grpc_python_plugin) runs the same YAML cases against the real server
 * over gRPC. Skips, saying why, when the Debian packages are missing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "@sealpost/server";
import { defaultKnownFailing, packageDir } from "../src/runner/paths.js";

const PYTHON = "/usr/bin/python3";

function missingPrerequisite(): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", "import grpc, google.protobuf, yaml"], { stdio: "pipe" });
  } catch {
    return `${PYTHON} lacks grpc, google.protobuf or yaml (apt-get install python3-grpcio python3-protobuf python3-yaml)`;
  }
  for (const bin of ["protoc", "grpc_python_plugin"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${bin}`], { stdio: "pipe" });
    } catch {
      return `${bin} not on PATH (apt-get install protobuf-compiler protobuf-compiler-grpc)`;
    }
  }
  return undefined;
}

const missing = missingPrerequisite();
if (missing) console.warn(`SKIPPING the Python conformance client: ${missing}`);

let nats: TestNats;
let server: RunningServer;
let work: string;

describe.skipIf(missing !== undefined)("Python client (grpcio) against the sealpost server", () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "sealpost-py-"));
    nats = await startTestNats();
    server = await startTestServer(nats.url);
  });
  afterAll(async () => {
    await server?.close();
    await nats?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("passes the server cases over gRPC", { timeout: 110_000 }, async () => {
    const json = join(work, "results.json");
    const args = [
      join(packageDir, "python/run_cases.py"),
      "--url",
      server.url,
      "--known-failing",
      defaultKnownFailing,
      "--stubs-dir",
      join(work, "stubs"),
      "--json",
      json,
      "--junit",
      join(work, "junit.xml"),
      "--quiet",
    ];
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(PYTHON, args, { env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } });
      let output = "";
      child.stdout.on("data", (d) => (output += d));
      child.stderr.on("data", (d) => (output += d));
      child.on("close", (code) => resolve({ code, output }));
    });
    if (code !== 0) console.log(output);
    expect(code).toBe(0);
    const results = JSON.parse(readFileSync(json, "utf8")) as { name: string; status: string; message?: string }[];
    expect(results.length).toBeGreaterThan(50);
    expect(results.filter((r) => r.status !== "pass" && r.status !== "known-fail")).toEqual([]);
    expect(readFileSync(join(work, "junit.xml"), "utf8")).toContain('<testsuite name="python-grpcio/grpc"');
  });
});

describe("the Python runner's Ed25519 verifier", () => {
  it("applies the protocol's rule: accepts exactly the cases of ed25519-rule.json", () => {
    const script = [
      "import json, sys",
      "from sealpost_conformance.curves import ed25519_verify",
      "v = json.load(open(sys.argv[1]))",
      "m = bytes.fromhex(v['message'])",
      "print(json.dumps({c['name']: ed25519_verify(bytes.fromhex(c['public_key']), m, bytes.fromhex(c['signature'])) for c in v['cases']}))",
    ].join("\n");
    const vectors = join(packageDir, "vectors", "ed25519-rule.json");
    const got = JSON.parse(execFileSync(PYTHON, ["-c", script, vectors], { cwd: join(packageDir, "python"), encoding: "utf8" }));
    const want = JSON.parse(readFileSync(vectors, "utf8")).cases.map((c: { name: string; valid: boolean }) => [c.name, c.valid]);
    expect(Object.entries(got)).toEqual(want);
  });
});
