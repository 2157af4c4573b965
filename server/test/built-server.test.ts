/**
 * The server as `npm start` runs it: built into one module by server/build.mjs and run by
 * plain node (no tsx loader). Its exit codes and messages, and a real account and a Send
 * through it on a real nats-server.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { builtServer, createTestAccount, plainTransport, spawnServerProcess, startTestNats, type ServerProcess, type TestNats } from "@sealpost/test-support";
import { bytes, deliveryOf, entriesFor, Inbox, newMessageId, text } from "./delivery-helpers.js";

const TOKEN_SECRET = "built-server-test-secret-built-server-test!";
let nats: TestNats;
let server: ServerProcess;

beforeAll(async () => {
  nats = await startTestNats();
  server = await spawnServerProcess({ NATS_URL: nats.url, SEALPOST_TOKEN_SECRET: TOKEN_SECRET });
});
afterAll(async () => {
  await server?.stop();
  await nats?.stop();
});

describe("the built server (npm start)", () => {
  it("is one module that node runs without tsx; --help lists the options and exits 0", () => {
    const out = execFileSync(process.execPath, [builtServer(), "--help"], { encoding: "utf8" });
    expect(out).toContain("Usage: sealpost-server");
    expect(out).toContain("SEALPOST_PORT");
  });

  it("refuses a bad option with exit code 2 and names it", () => {
    const r = spawnSync(process.execPath, [builtServer(), "--port", "not-a-port"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^sealpost-server: .*port/m);
  });

  it("refuses to join a deployment configured with another mailbox partition count: exit code 1 and both counts named", () => {
    // This deployment's first instance (beforeAll) named no count and stored the default 4.
    const r = spawnSync(process.execPath, [builtServer()], {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, NATS_URL: nats.url, SEALPOST_TOKEN_SECRET: TOKEN_SECRET, SEALPOST_PORT: "0", SEALPOST_MAILBOX_PARTITIONS: "16" },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^sealpost-server: mailbox partition count mismatch: this instance is configured with --mailbox-partitions 16, but .* uses 4;/m);
  });

  it("serves the directory and delivery on one port: an account is created and a message sent and received", async () => {
    const directory = createClient(DirectoryService, plainTransport(server.url));
    expect((await directory.getTreeHead({})).logKey.length).toBe(32);
    const alice = await createTestAccount(server.url, `built-a-${Date.now().toString(36)}`);
    const bob = await createTestAccount(server.url, `built-b-${Date.now().toString(36)}`);
    await deliveryOf(alice.devices[0], server.url).send({
      messageId: newMessageId(),
      sharedBody: bytes("through the bundle"),
      entries: entriesFor(bob.devices),
    });
    const inbox = new Inbox(deliveryOf(bob.devices[0], server.url));
    const [got] = await inbox.waitForMessages(1);
    expect(text(got.sharedBody)).toBe("through the bundle");
    await inbox.close();
    // the server logs as JSON lines on stderr, and never a message body
    expect(server.logs.some((l) => l.includes('"msg":"listening"'))).toBe(true);
  });
});
