/**
 * A Receive stream whose hint subscription fails when its turn comes (the NATS connection
 * closed between the call and the batched write) ends UNAVAILABLE, as one refused at once
 * does: without its hints it would wait for mail it is never told of.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { ReceiveStream, type ReceiveStreamDeps } from "../src/delivery/receive-stream.js";
import { withMethod } from "./delivery-helpers.js";

let nats: TestNats;
let server: RunningServer;

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  server = await startTestServer(nats.url, { tokenSecret: "test-secret-test-secret-test-secret!" });
});
afterAll(async () => {
  await server?.close();
  await nats?.stop();
});

describe("a Receive stream's hint subscription", () => {
  it("failing when its turn comes ends the stream UNAVAILABLE", async () => {
    const ctx = server.context;
    const real = ctx.nats.publisher;
    // The subscription is accepted, then fails as the connection closes before its SUB goes out.
    const publisher = withMethod(real, "subscribe", (_subject, _onMsg, onError) => {
      setTimeout(() => onError(Object.assign(new Error("closed"), { name: "ClosedConnectionError" })), 20);
      return { unsubscribe() {} };
    });
    const deps: ReceiveStreamDeps = {
      nats: { ...ctx.nats, publisher },
      mailboxes: new Mailboxes(ctx.nats, ctx.layout.partitions),
      receivers: ctx.layout.buckets.receivers,
      log: ctx.log,
      now: Date.now,
    };
    const device = { accountId: `acct${randomBytes(6).toString("hex")}`, deviceId: 1 };
    const stream = new ReceiveStream(deps, device, "stream-unsubscribed", 0, 8);
    const events: string[] = [];
    const abort = new AbortController();
    const ended = (async () => {
      for await (const ev of stream.run(abort.signal)) events.push(ev.event.case ?? "");
    })().catch((e) => e);
    const err = await Promise.race([ended, new Promise((r) => setTimeout(() => r(new Error("the stream did not end within 5 s")), 5_000))]);
    abort.abort();
    expect(events).toEqual(["drained"]); // the empty mailbox was read before the failure
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toMatch(/subscribing to mail hints/);
  });
});
