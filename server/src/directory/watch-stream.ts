/**
 * WatchDirectory for one caller: subscribe to the instance hub first, then read each
 * account's current list (the snapshot), then relay hub events newer than what was sent.
 * Subscribing before reading means no change can fall between snapshot and stream.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { DirectoryChangeKind, WatchDirectoryResponseSchema, type WatchDirectoryResponse } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { ParsedDeviceList } from "./device-list-rules.js";
import type { DeviceListStore } from "./device-list-store.js";
import type { DirectoryEvent, DirectoryHub } from "./watch.js";
import { storeOp } from "../nats/store-errors.js";

/**
 * Events one watcher may have queued (changes of its accounts not yet taken by the client).
 * Beyond it the stream ends with RESOURCE_EXHAUSTED, so a client that reads slowly or not at
 * all costs bounded memory; it reconnects and gets fresh snapshots.
 */
export const MAX_QUEUED_WATCH_EVENTS = 1024;

export async function* watchAccounts(
  accountIds: string[],
  hub: DirectoryHub,
  store: DeviceListStore,
  signal: AbortSignal,
  maxQueued = MAX_QUEUED_WATCH_EVENTS,
): AsyncGenerator<WatchDirectoryResponse> {
  const queue: DirectoryEvent[] = [];
  let overflowed = false;
  let wake: (() => void) | undefined;
  const unsubscribe = hub.subscribe(accountIds, (e) => {
    if (overflowed) return;
    if (queue.length >= maxQueued) {
      overflowed = true;
      queue.length = 0;
    } else {
      queue.push(e);
    }
    wake?.();
  });
  const tooSlow = () =>
    new ConnectError(`watch consumer too slow: more than ${maxQueued} directory changes queued; watch again for fresh snapshots`, Code.ResourceExhausted);
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    const sent = new Map<string, ParsedDeviceList>();
    const snapshots = await storeOp("the device-list snapshots", () => Promise.all(accountIds.map((id) => store.current(id))));
    for (let i = 0; i < accountIds.length; i++) {
      const cur = snapshots[i];
      if (!cur) throw new ConnectError(`account ${accountIds[i]} not found`, Code.NotFound);
      sent.set(accountIds[i], cur);
    }
    for (const [accountId, cur] of sent) {
      if (overflowed) throw tooSlow();
      yield create(WatchDirectoryResponseSchema, { accountId, kind: DirectoryChangeKind.SNAPSHOT, deviceId: 0, deviceList: cur.signed });
    }
    while (!signal.aborted) {
      if (overflowed) throw tooSlow();
      const e = queue.shift();
      if (!e) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      const last = sent.get(e.accountId);
      if (!last) continue;
      if (e.kind === "prekeys") {
        if (!last.list.devices.some((d) => d.deviceId === e.deviceId)) continue;
        yield create(WatchDirectoryResponseSchema, {
          accountId: e.accountId,
          kind: DirectoryChangeKind.PREKEYS_ROTATED,
          deviceId: e.deviceId,
          deviceList: last.signed,
        });
        continue;
      }
      if (e.kind !== "list") continue;
      if (e.current.list.version <= last.list.version) continue; // already in the snapshot
      sent.set(e.accountId, e.current);
      const before = new Set(last.list.devices.map((d) => d.deviceId));
      const after = new Set(e.current.list.devices.map((d) => d.deviceId));
      for (const id of after) {
        if (!before.has(id)) yield change(e.accountId, DirectoryChangeKind.DEVICE_ADDED, id, e.current);
      }
      for (const id of before) {
        if (!after.has(id)) yield change(e.accountId, DirectoryChangeKind.DEVICE_REMOVED, id, e.current);
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    unsubscribe();
  }
}

function change(accountId: string, kind: DirectoryChangeKind, deviceId: number, cur: ParsedDeviceList): WatchDirectoryResponse {
  return create(WatchDirectoryResponseSchema, { accountId, kind, deviceId, deviceList: cur.signed });
}
