/**
 * While NATS is down, calls that need the store answer UNAVAILABLE (retry later), not
 * INTERNAL (a bug): unary directory and delivery calls, a Receive stream whose device
 * check cannot be read, and a WatchDirectory stream whose snapshots cannot be read. Once NATS is back the same calls succeed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { createTestAccount, startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { isTransientStoreError } from "../src/nats/store-errors.js";

let nats: TestNats;
let server: RunningServer;

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  server = await startTestServer(nats.url);
});

afterAll(async () => {
  await server?.close();
  await nats?.stop();
});

let lastMessage = "";
async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    lastMessage = ConnectError.from(err).rawMessage;
    return ConnectError.from(err).code;
  }
}

describe("store outage", () => {
  it("tells transient NATS errors from others", () => {
    const named = (name: string, extra: object = {}) => Object.assign(new Error("x"), { name }, extra);
    expect(isTransientStoreError(named("TimeoutError"))).toBe(true);
    expect(isTransientStoreError(named("NoResponders"))).toBe(true);
    expect(isTransientStoreError(named("JetStreamApiError", { status: 503 }))).toBe(true);
    expect(isTransientStoreError(named("JetStreamApiError", { status: 404 }))).toBe(false);
    expect(isTransientStoreError(new TypeError("bug"))).toBe(false);
    expect(isTransientStoreError(undefined)).toBe(false);
  });

  it("answers UNAVAILABLE while NATS is down and serves again once it is back", { timeout: 120_000 }, async () => {
    const acc = await createTestAccount(server.url, "outage", { oneTimePrekeys: 1 });
    const device = acc.devices[0];
    // The test device's own clients send its current token.
    const directory = device.directory;
    const delivery = createClient(DeliveryService, device.transport);
    const receiveFirst = async () => {
      for await (const ev of delivery.receive({}, { timeoutMs: 20_000 })) return ev;
    };

    await nats.kill!();
    // The instance notices the lost connection and says so at once (no 10 s JetStream timeout).
    await expect
      .poll(async () => (await codeOf(directory.getDeviceList({ accountId: device.address.accountId }, { timeoutMs: 20_000 })), lastMessage), {
        timeout: 15_000,
      })
      .toMatch(/this instance lost NATS/);
    try {
      expect(await codeOf(directory.getDeviceList({ accountId: device.address.accountId }, { timeoutMs: 20_000 }))).toBe(Code.Unavailable);
      expect(await codeOf(delivery.ack({ sequences: [1n] }, { timeoutMs: 20_000 }))).toBe(Code.Unavailable);
      expect(await codeOf(receiveFirst())).toBe(Code.Unavailable);
      const watchFirst = async () => {
        for await (const ev of directory.watchDirectory({ accountIds: [device.address.accountId] }, { timeoutMs: 20_000 })) return ev;
      };
      expect(await codeOf(watchFirst())).toBe(Code.Unavailable);
    } finally {
      await nats.start!();
    }

    // The client reconnects on its own; give it a moment, bounded.
    let list: Code | "ok" = Code.Unavailable;
    for (let i = 0; i < 40 && list !== "ok"; i++) {
      list = await codeOf(directory.getDeviceList({ accountId: device.address.accountId }, { timeoutMs: 5_000 }));
      if (list !== "ok") await new Promise((r) => setTimeout(r, 250));
    }
    expect(list).toBe("ok");
    expect(await codeOf(receiveFirst())).toBe("ok");
  });
});
