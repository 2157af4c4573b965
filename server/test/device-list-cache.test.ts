/**
 * DeviceListCache on its own: answers from memory only while its lease holds, keeps lists
 * current from watch events, and never lets a read that raced a watch event overwrite it.
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { DeviceListSchema, SignedDeviceListSchema } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { DeviceListCache } from "../src/directory/device-list-cache.js";
import type { StoredDeviceList } from "../src/directory/device-list-store.js";

function stored(accountId: string, version: number, revision: number): StoredDeviceList {
  const list = create(DeviceListSchema, { accountId, version: BigInt(version) });
  return { list, signed: create(SignedDeviceListSchema), revision };
}

function setup() {
  let t = 0;
  const store = new Map<string, StoredDeviceList>();
  const reads: string[] = [];
  let hold: Promise<void> | undefined;
  const cache = new DeviceListCache(
    async (a) => {
      reads.push(a);
      const v = store.get(a);
      await hold;
      return v;
    },
    () => t,
    2,
  );
  return {
    cache,
    store,
    reads,
    setTime: (x: number) => (t = x),
    holdReads: () => {
      let release!: () => void;
      hold = new Promise((r) => (release = r));
      return () => {
        hold = undefined;
        release();
      };
    },
  };
}

describe("DeviceListCache", () => {
  it("reads through and keeps nothing while it holds no lease", async () => {
    const s = setup();
    s.store.set("a", stored("a", 1, 10));
    expect((await s.cache.get("a"))?.list.version).toBe(1n);
    expect((await s.cache.get("a"))?.list.version).toBe(1n);
    expect(s.reads).toEqual(["a", "a"]);
    expect(s.cache.size).toBe(0);
  });

  it("answers from memory under a lease, follows watch events, and reads through once the lease ran out", async () => {
    const s = setup();
    s.cache.renew(1_000);
    s.store.set("a", stored("a", 1, 10));
    await s.cache.get("a");
    await s.cache.get("a");
    expect(s.reads).toEqual(["a"]);
    // The watch delivers version 2; an older revision arriving late is ignored.
    s.cache.apply("a", stored("a", 2, 11), 11);
    s.cache.apply("a", stored("a", 1, 10), 10);
    expect((await s.cache.get("a"))?.list.version).toBe(2n);
    expect(s.reads).toEqual(["a"]);
    s.setTime(1_000);
    s.store.set("a", stored("a", 3, 12));
    expect((await s.cache.get("a"))?.list.version).toBe(3n);
    expect(s.reads).toEqual(["a", "a"]);
  });

  it("does not keep a read that raced a watch event (the read may be older than the event)", async () => {
    const s = setup();
    s.cache.renew(1_000);
    s.store.set("a", stored("a", 1, 10));
    const release = s.holdReads();
    const pending = s.cache.get("a");
    s.cache.apply("a", stored("a", 2, 11), 11); // not cached yet: nothing to update, but noted
    release();
    expect((await pending)?.list.version).toBe(1n);
    s.store.set("a", stored("a", 2, 11));
    expect((await s.cache.get("a"))?.list.version).toBe(2n);
    expect(s.reads).toEqual(["a", "a"]);
  });

  it("fence() stops answering from memory at once", async () => {
    const s = setup();
    s.cache.renew(1_000);
    s.store.set("a", stored("a", 1, 10));
    await s.cache.get("a");
    s.cache.fence();
    await s.cache.get("a");
    expect(s.reads).toEqual(["a", "a"]);
  });

  it("keeps at most maxAccounts, dropping the least recently used", async () => {
    const s = setup();
    s.cache.renew(1_000);
    for (const a of ["a", "b", "c"]) s.store.set(a, stored(a, 1, 1));
    await s.cache.get("a");
    await s.cache.get("b");
    await s.cache.get("a");
    await s.cache.get("c"); // evicts b
    expect(s.cache.size).toBe(2);
    s.reads.length = 0;
    await s.cache.get("a");
    await s.cache.get("b");
    expect(s.reads).toEqual(["b"]);
  });
});
