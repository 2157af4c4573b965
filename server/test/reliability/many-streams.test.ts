/**
 * Many concurrent calls on one instance: every open call links its signal to the server's
 * shutdown signal, so more than 10 of them used to trigger Node's
 * MaxListenersExceededWarning ("possible EventTarget memory leak") in production logs,
 * although the listeners are removed when each call ends. 60 open Receive streams must
 * raise no such warning, all get served, and all close cleanly.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { createTestAccount, deliveryClient, startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../../src/server.js";

let nats: TestNats;
let server: RunningServer;
const warnings: string[] = [];
const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url);
  process.on("warning", onWarning);
});
afterAll(async () => {
  process.off("warning", onWarning);
  await server?.close();
  await nats?.stop();
});

it("60 concurrent Receive streams: served, no MaxListenersExceededWarning", async () => {
  const accounts = await Promise.all(
    Array.from({ length: 6 }, (_, i) => createTestAccount(server.url, `many-${randomBytes(3).toString("hex")}-${i}`, { oneTimePrekeys: 1 })),
  );
  // One controller per stream: a shared one would itself collect 60 listeners client-side.
  const aborts = Array.from({ length: 60 }, () => new AbortController());
  let drained = 0;
  const streams = Array.from({ length: 60 }, async (_, i) => {
    // Ten streams per device: each new one replaces the previous (takeover), all concurrent.
    const device = accounts[i % accounts.length].devices[0];
    try {
      for await (const ev of deliveryClient(device, server.url).receive({}, { signal: aborts[i].signal })) {
        if (ev.event.case === "drained") drained++;
        if (ev.event.case === "replaced") return;
      }
    } catch {
      // aborted at the end
    }
  });
  const end = Date.now() + 20_000;
  while (drained < 60 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  for (const a of aborts) a.abort();
  await Promise.all(streams);
  expect(drained).toBe(60);
  await new Promise((r) => setTimeout(r, 50)); // warnings are emitted on the next tick
  expect(warnings.filter((w) => /MaxListenersExceeded/.test(w))).toEqual([]);
  expect(server.context.shutdownSignal.aborted).toBe(false);
});
