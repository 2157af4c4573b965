/**
 * `npx sealpost` as README shows it, after `npm ci`: the workspace links the bin
 * (clients/ts/bin/sealpost.js, which runs the TypeScript CLI under tsx). It answers --help,
 * creates an account against a real server, and an unknown command exits non-zero.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "@sealpost/server";

const root = fileURLToPath(new URL("../../..", import.meta.url));
let nats: TestNats;
let server: RunningServer;
let store: string;

function npxSealpost(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("npx", ["--no-install", "sealpost", ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url);
  store = mkdtempSync(join(tmpdir(), "sealpost-cli-bin-"));
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
  if (store) rmSync(store, { recursive: true, force: true });
});

describe("npx sealpost", () => {
  it("prints its usage", async () => {
    const out = await npxSealpost(["--help"]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^usage: sealpost /);
  });

  it("creates an account against a real server", async () => {
    const out = await npxSealpost(["--store", store, "--server", server.url, "init", "npx-alice"]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/npx-alice/);
  });

  it("exits non-zero on an unknown command, naming it", async () => {
    const out = await npxSealpost(["--store", store, "--server", server.url, "frobnicate"]);
    expect(out.code).not.toBe(0);
    expect(out.stderr + out.stdout).toMatch(/frobnicate/);
  });
});
