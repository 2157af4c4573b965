/**
 * The embedded default: a nats-server child that starts on a free port with JetStream and
 * our store dir, stops cleanly, and a clear error when the binary is missing or the port taken.
 */
import { describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm } from "node:fs/promises";
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
