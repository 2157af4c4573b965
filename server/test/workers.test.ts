/**
 * `--workers N` through the built server (as `npm start` runs it): two worker processes
 * behind one port on a real nats-server. Connections are spread over both, mail crosses
 * them, /metrics adds both up, a worker killed with SIGKILL is replaced, SIGTERM stops every
 * process, and a worker that cannot listen stops the server with exit code 1 and a reason.
 */
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as http from "node:http";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtServer, createTestAccount, spawnServerProcess, startTestNats, type ServerProcess, type TestNats } from "@sealpost/test-support";
import { bytes, deliveryOf, entriesFor, Inbox, newMessageId, text, waitUntil } from "./delivery-helpers.js";

const TOKEN_SECRET = "workers-test-secret-workers-test-secret!!";
let nats: TestNats;
let server: ServerProcess;

beforeAll(async () => {
  nats = await startTestNats();
  server = await spawnServerProcess({ NATS_URL: nats.url, SEALPOST_TOKEN_SECRET: TOKEN_SECRET, SEALPOST_WORKERS: "2", SEALPOST_LOG_LEVEL: "debug" });
  await waitUntil("both workers listening", () => server.logs.some((l) => l.includes('"msg":"workers listening"')));
});
afterAll(async () => {
  await server?.stop();
  await nats?.stop();
});

/** The worker pids of the last "workers listening" line. */
function workerPids(): number[] {
  const line = server.logs.filter((l) => l.includes('"msg":"workers listening"')).at(-1)!;
  return JSON.parse(line).pids;
}

/** A unary call on a connection of its own (HTTP/1.1, no keep-alive): the primary hands each new connection to the next worker. */
function callOnNewConnection(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${server.url}/sealpost.directory.v1.DirectoryService/GetTreeHead`,
      { method: "POST", agent: false, headers: { "content-type": "application/json", "connect-protocol-version": "1" } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end("{}");
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const callsBy = (worker: number) => server.logs.filter((l) => l.includes('"msg":"call"') && l.includes(`"worker":${worker},`)).length;

describe("--workers 2", () => {
  it("serves from both workers on one port, and mail sent through one reaches a stream on the other", async () => {
    expect(workerPids()).toHaveLength(2);
    for (let i = 0; i < 8; i++) expect(await callOnNewConnection()).toBe(200);
    await waitUntil("calls logged by both workers", () => callsBy(1) > 0 && callsBy(2) > 0);

    const alice = await createTestAccount(server.url, `wk-a-${Date.now().toString(36)}`);
    const bob = await createTestAccount(server.url, `wk-b-${Date.now().toString(36)}`);
    const inbox = new Inbox(deliveryOf(bob.devices[0], server.url));
    await inbox.waitDrained();
    // Each Send below goes on a connection of its own, so they alternate between the workers:
    // the stream is on one of them, so the other's Sends cross to it.
    const sendsBy = (w: number) =>
      server.logs.filter((l) => l.includes('"msg":"call"') && l.includes(`"worker":${w},`) && l.includes('"procedure":"Send"')).length;
    const before = [sendsBy(1), sendsBy(2)];
    for (let i = 0; i < 6; i++) {
      await deliveryOf(alice.devices[0], server.url).send({ messageId: newMessageId(), sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) });
    }
    const got = await inbox.waitForMessages(6);
    expect(got.map((m) => text(m.sharedBody))).toEqual(["m0", "m1", "m2", "m3", "m4", "m5"]);
    await waitUntil("Sends logged by both workers", () => sendsBy(1) > before[0] && sendsBy(2) > before[1]);
    await inbox.close();
  });

  it("answers /metrics for every worker", async () => {
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^sealpost_nats_connected 2$/m);
  });

  it("replaces a worker killed with SIGKILL and keeps serving", async () => {
    const [victim, survivor] = workerPids();
    process.kill(victim, "SIGKILL");
    await waitUntil(
      "the replacement listening",
      () => server.logs.some((l) => l.includes('"msg":"worker exited; starting another"')) && workerPids()[0] !== victim && workerPids()[1] !== victim,
      30_000,
    );
    expect(workerPids()).toContain(survivor);
    expect(alive(victim)).toBe(false);
    for (let i = 0; i < 4; i++) expect(await callOnNewConnection()).toBe(200);
  });

  it("runs the embedded nats-server in the primary when NATS_URL is unset, and stops every process on SIGTERM", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sealpost-workers-"));
    const other = await spawnServerProcess({ NATS_URL: "", SEALPOST_DATA_DIR: dataDir, SEALPOST_WORKERS: "2" });
    try {
      await waitUntil("both workers listening", () => other.logs.some((l) => l.includes('"msg":"workers listening"')));
      expect(other.logs.filter((l) => l.includes('"msg":"embedded nats-server started"'))).toHaveLength(1);
      const pids: number[] = JSON.parse(other.logs.find((l) => l.includes('"msg":"workers listening"'))!).pids;
      const bob = await createTestAccount(other.url, `wk-e-${Date.now().toString(36)}`);
      expect(bob.devices).toHaveLength(1);
      const natsPid = Number(execFileSync("pgrep", ["-f", dataDir], { encoding: "utf8" }).trim().split("\n")[0]);
      expect(alive(natsPid)).toBe(true);
      await other.stop();
      expect(other.logs.filter((l) => l.includes('"msg":"stopped"'))).toHaveLength(3); // two workers, then the primary
      expect([...pids, natsPid].filter(alive)).toEqual([]);
    } finally {
      await other.kill();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("exits 1 and says why when a worker cannot listen (the port is taken)", async () => {
    const taken = net.createServer().listen(0, "127.0.0.1");
    await new Promise((r) => taken.once("listening", r));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const child = spawn(process.execPath, [builtServer(), "--workers", "2", "--port", String(port)], {
        env: { ...process.env, NATS_URL: nats.url, SEALPOST_TOKEN_SECRET: TOKEN_SECRET },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
      expect(code).toBe(1);
      expect(stderr).toMatch(/EADDRINUSE/);
      expect(stderr).toMatch(/^sealpost-server: a worker exited before it was listening/m);
    } finally {
      taken.close();
    }
  });

  it("refuses --workers 0 with exit code 2", async () => {
    const child = spawn(process.execPath, [builtServer(), "--workers", "0"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    expect(await new Promise((r) => child.once("exit", r))).toBe(2);
    expect(stderr).toMatch(/--workers must be 1 to 64/);
  });
});
