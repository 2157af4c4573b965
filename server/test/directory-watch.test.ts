/**
 * The instance-wide directory watch (DirectoryHub) and one WatchDirectory stream against a
 * real nats-server: the hub re-opens a watch that ended without losing the changes made
 * meanwhile, and a watcher that does not read ends with RESOURCE_EXHAUSTED instead of
 * queueing without bound.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import type { KV } from "@nats-io/kv";
import { startTestNats, type TestNats } from "@sealpost/test-support";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { ensureLayout, type Layout } from "../src/nats/layout.js";
import { createLogger } from "../src/logger.js";
import { DirectoryHub, type DirectoryEvent } from "../src/directory/watch.js";
import { watchAccounts } from "../src/directory/watch-stream.js";
import type { DeviceListStore } from "../src/directory/device-list-store.js";

let nats: TestNats;
let conn: Nats;
let layout: Layout;
const hubs: DirectoryHub[] = [];

beforeAll(async () => {
  nats = await startTestNats();
  conn = await connectNats(nats.url, "directory-watch");
  layout = await ensureLayout(conn.jsm, conn.kvm, 4, 1);
});
afterAll(async () => {
  hubs.forEach((h) => h.close());
  await conn?.nc.close();
  await nats?.stop();
});

const waitFor = async (cond: () => boolean, what: string) => {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};
const one = Uint8Array.of(1);

describe("DirectoryHub", () => {
  it("re-opens a watch that ended, from the revision after the last one seen, and logs it", async () => {
    const watches: { stop(): void }[] = [];
    // The real bucket, but the test can end the hub's watch as NATS trouble would.
    const prekeys = new Proxy(layout.buckets.prekeys, {
      get(target, prop) {
        if (prop === "watch") {
          return async (opts: Parameters<KV["watch"]>[0]) => {
            const w = await target.watch(opts);
            watches.push(w);
            return w;
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const lines: string[] = [];
    const hub = new DirectoryHub(
      createLogger("info", (l) => lines.push(l)),
      20,
    );
    hubs.push(hub);
    await hub.start(layout.buckets.accounts, prekeys);
    const seen: string[] = [];
    hub.subscribeAll((e: DirectoryEvent) => e.kind === "prekeys" && seen.push(`${e.accountId}.${e.deviceId}`));

    await layout.buckets.prekeys.put("restart.1", one);
    await waitFor(() => seen.includes("restart.1"), "the first change");
    watches[0].stop(); // the watch ends
    await layout.buckets.prekeys.put("restart.2", one); // while no watch is open
    await waitFor(() => seen.includes("restart.2"), "the change made while the watch was down");
    await layout.buckets.prekeys.put("restart.3", one);
    await waitFor(() => seen.includes("restart.3"), "a change after the restart");
    expect(seen).toEqual(["restart.1", "restart.2", "restart.3"]);
    expect(watches).toHaveLength(2);
    expect(lines.some((l) => l.includes("directory watch ended; restarting"))).toBe(true);
    expect(lines.some((l) => l.includes("directory watch restarted"))).toBe(true);
  });
});

describe("WatchDirectory stream", () => {
  it("ends with RESOURCE_EXHAUSTED when its client does not keep up, and not before", async () => {
    const hub = new DirectoryHub(createLogger("error"));
    hubs.push(hub);
    await hub.start(layout.buckets.accounts, layout.buckets.prekeys);
    // A store with one listed device (the stream checks only these fields).
    const store = { current: async () => ({ list: { version: 1n, devices: [{ deviceId: 1 }] }, signed: undefined }) } as unknown as DeviceListStore;
    const abort = new AbortController();
    const slow = watchAccounts(["slowacct"], hub, store, abort.signal, 5);
    const fine = watchAccounts(["slowacct"], hub, store, abort.signal, 100);
    expect((await slow.next()).value?.accountId).toBe("slowacct"); // the snapshot
    expect((await fine.next()).value?.accountId).toBe("slowacct");
    let relayed = 0;
    const unsubscribe = hub.subscribe(["slowacct"], () => relayed++);
    // One at a time: the bucket keeps one revision per key, so a watch that lags behind
    // back-to-back puts of the same key sees only the latest (the flake this once was).
    for (let i = 1; i <= 8; i++) {
      await layout.buckets.prekeys.put("slowacct.1", one);
      await waitFor(() => relayed === i, `prekey change ${i}`);
    }
    unsubscribe();
    // Both were paused at a yield; the one allowed 100 queued events relays all of them.
    for (let i = 0; i < 8; i++) expect((await fine.next()).value?.deviceId).toBe(1);
    const err = await slow.next().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.rawMessage).toBe("watch consumer too slow: more than 5 directory changes queued; watch again for fresh snapshots");
    abort.abort();
    await fine.return(undefined);
  });
});
