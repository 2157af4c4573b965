import { describe, expect, it } from "vitest";
import { ConfigError, defaultConfig, helpText, loadConfig } from "../src/config.js";

describe("configuration", () => {
  it("reads env vars, and flags override them", () => {
    const c = loadConfig(["--port", "9000"], { SEALPOST_PORT: "7000", NATS_URL: "nats://x:4222", SEALPOST_REPLICAS: "3" });
    expect(c).toMatchObject({ port: 9000, natsUrl: "nats://x:4222", replicas: 3, host: "127.0.0.1" });
  });

  it("defaults to the embedded nats-server", () => {
    expect(loadConfig([], {})).toEqual(defaultConfig());
    expect(defaultConfig().natsUrl).toBe("");
  });

  it("--help lists every option with its env var", () => {
    expect(loadConfig(["--help"], {})).toBe("help");
    const help = helpText();
    for (const name of ["--port", "NATS_URL", "--data-dir", "--replicas", "--token-secret", "--tls-cert"]) expect(help).toContain(name);
  });

  it.each([
    [["--port", "abc"], /--port .* non-negative integer/],
    [["--port", "70000"], /at most 65535/],
    [["--replicas", "0"], /--replicas must be 1 to 5/],
    [["--mailbox-partitions", "257"], /--mailbox-partitions must be 1 to 256 \(or 0: the deployment's count\)/],
    [["--mailbox-partitions=-1"], /--mailbox-partitions .* non-negative integer/],
    [["--log-level", "loud"], /--log-level/],
    [["--token-secret", "short"], /at least 32/],
    [["--tls-cert", "a.pem"], /go together/],
  ])("rejects %j", (argv, message) => {
    expect(() => loadConfig(argv as string[], {})).toThrow(ConfigError);
    expect(() => loadConfig(argv as string[], {})).toThrow(message);
  });

  it("leaves the mailbox partition count to the deployment unless one is named", () => {
    expect(loadConfig([], {}) as { mailboxPartitions: number }).toMatchObject({ mailboxPartitions: 0 });
    expect(loadConfig(["--mailbox-partitions", "64"], {})).toMatchObject({ mailboxPartitions: 64 });
    expect(loadConfig([], { SEALPOST_MAILBOX_PARTITIONS: "16" })).toMatchObject({ mailboxPartitions: 16 });
  });

  it("rejects unknown flags", () => {
    expect(() => loadConfig(["--nope"], {})).toThrow(/nope/);
  });
});
