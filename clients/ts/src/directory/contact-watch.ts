/**
 * The directory watch of a running device: one WatchDirectory stream for this account and
 * every 1:1 contact (up to 256), refreshing the verified-list cache when a newer device list
 * is announced. Re-opened with backoff when it ends, and restarted when the contact set
 * changes.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { DeviceListSchema } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import type { ServerApi } from "../transport/server-api.js";
import { directPeer, type ConversationStore } from "../store/conversation-store.js";
import type { ContactDirectory } from "./contact-directory.js";
import { Backoff, sleep } from "../util/backoff.js";

/** Accounts one WatchDirectory call may name. */
const MAX_WATCHED_ACCOUNTS = 256;

export interface ContactWatchDeps {
  accountId: string;
  api: ServerApi;
  store: ConversationStore;
  directory: ContactDirectory;
  /** False once the device stopped (or watching is off): a pending restart then does nothing. */
  active(): boolean;
}

export class ContactWatch {
  private watch?: { abort: AbortController; accounts: string; done: Promise<void> };

  constructor(private readonly d: ContactWatchDeps) {}

  /** Watches this account and every 1:1 contact; a no-op when that set has not changed. */
  async restart(): Promise<void> {
    if (!this.d.active()) return;
    const peers = (await this.d.store.listConversations()).map(directPeer).filter((p): p is string => !!p);
    const accounts = [...new Set([this.d.accountId, ...peers])].sort().slice(0, MAX_WATCHED_ACCOUNTS);
    const key = accounts.join(",");
    if (!this.d.active() || (this.watch && this.watch.accounts === key)) return;
    void this.stop();
    const abort = new AbortController();
    const done = (async () => {
      const backoff = new Backoff({ baseMs: 250, maxMs: 10_000 });
      while (!abort.signal.aborted) {
        try {
          for await (const ev of this.d.api.directory.watchDirectory({ accountIds: accounts }, { signal: abort.signal })) {
            backoff.reset();
            const cached = await this.d.directory.known(ev.accountId);
            const version = ev.deviceList ? versionOf(ev.deviceList.deviceList) : undefined;
            if (version !== undefined && (!cached || cached.version < version)) await this.d.directory.refresh(ev.accountId).catch(() => {});
          }
        } catch {
          // Reconnect below.
        }
        await sleep(backoff.next(), abort.signal);
      }
    })();
    this.watch = { abort, accounts: key, done };
  }

  /** Ends the watch; resolves once its loop has ended. */
  stop(): Promise<void> {
    const w = this.watch;
    this.watch = undefined;
    w?.abort.abort();
    return w?.done ?? Promise.resolve();
  }
}

function versionOf(deviceList: Uint8Array): bigint | undefined {
  try {
    return fromBinary(DeviceListSchema, deviceList).version;
  } catch {
    return undefined;
  }
}
