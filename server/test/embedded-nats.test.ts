/**
 * The embedded default: a nats-server child that starts on a free port with JetStream and
 * our store dir, stops cleanly, and a clear error when the binary is missing or the port taken.
 */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { once } from "node:events";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsServerMissingError, replicasDedupeConsistently, startEmbeddedNats, supportsSyncAlways } from "../src/nats/embedded-server.js";

describe("embedded nats-server", () => {
  it("starts with JetStream under the data dir and leaves no process behind", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sealpost-embedded-"));
    try {
      const nats = await startEmbeddedNats({ dataDir: dir });
      const nc = await connect({ servers: nats.url });
      const jsm = await jetstreamManager(nc);
      const info = await jsm.getAccountInfo();
      expect(info.limits).toBeDefined();
      await nc.close();
      const conf = await readFile(join(dir, "nats-server.conf"), "utf8");
      expect(conf).toContain(join(dir, "jetstream"));
      expect(conf).toContain('listen: "127.0.0.1:-1"');
      // sync_interval only where the server understands it (2.9 rejects the field).
      expect(conf.includes("  sync_interval: always")).toBe(nats.syncAlways);
      const pid = nats.process.pid!;
      await nats.stop();
      expect(() => process.kill(pid, 0)).toThrow();
      expect(existsSync(join(dir, "nats-server.pid"))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a missing binary gives one clear line with the install command", async () => {
    const err = await startEmbeddedNats({ dataDir: join(tmpdir(), "never"), bin: "/nonexistent/nats-server" }).catch((e) => e);
    expect(err).toBeInstanceOf(NatsServerMissingError);
    expect(err.message).toMatch(/apt-get install -y nats-server/);
    expect(err.message).not.toContain("\n");
  });

  it("a port already taken: the error says what nats-server said", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sealpost-embedded-"));
    const held = createServer().listen(0, "127.0.0.1");
    await once(held, "listening");
    try {
      const port = (held.address() as AddressInfo).port;
      const err = await startEmbeddedNats({ dataDir: dir, port }).catch((e) => e);
      expect(err.message).toMatch(/^nats-server exited with code 1 before it was ready; see .*; it said: .*address already in use/);
    } finally {
      held.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a nats-server that exits while its pid file is written: the start fails with its cause, never hangs", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sealpost-embedded-"));
    const held = createServer().listen(0, "127.0.0.1");
    await once(held, "listening");
    // A FIFO as the pid file holds each open until the other side opens: the start's write
    // of its child's pid waits until this test reads it, long after the child has failed.
    const pidFile = join(dir, "nats-server.pid");
    execFileSync("mkfifo", [pidFile]);
    try {
      const port = (held.address() as AddressInfo).port;
      const outcome = startEmbeddedNats({ dataDir: dir, port }).then(
        () => "ready",
        (e: Error) => e.message,
      );
      await writeFile(pidFile, "0"); // what the stale-child check reads first: no earlier child
      await new Promise((r) => setTimeout(r, 1000)); // the child exits within milliseconds
      await readFile(pidFile, "utf8"); // lets the start's pid write finish
      const hung = new Promise((r) => setTimeout(() => r("still starting after 10 s"), 10_000));
      expect(await Promise.race([outcome, hung])).toMatch(/^nats-server exited with code 1 before it was ready; .*address already in use/);
    } finally {
      held.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 20_000);

  it("knows which versions support sync_interval", () => {
    expect(supportsSyncAlways("2.9.10")).toBe(false);
    expect(supportsSyncAlways("2.10.0")).toBe(true);
    expect(supportsSyncAlways("3.0.1")).toBe(true);
  });

  it("knows which versions keep R3 replicas identical under republished message ids", () => {
    for (const v of ["2.9.10", "2.9.25", "2.10.0", "2.10.13", "1.4.1"]) expect(replicasDedupeConsistently(v), v).toBe(false);
    for (const v of ["2.10.14", "2.10.29", "2.11.0", "2.12.1", "3.0.0", "2.10.14-RC.1"]) expect(replicasDedupeConsistently(v), v).toBe(true);
  });
});
