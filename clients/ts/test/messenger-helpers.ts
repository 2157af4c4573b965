/**
 * Helpers for the Messenger integration tests: a real nats-server and server instance,
 * Messengers on memory or file stores, and an event log per Messenger to wait on.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Messenger, createMemoryMessengerStores, type MessengerOptions, type MessengerStores } from "../src/messenger/messenger.js";
import { createFileMessengerStores } from "../src/store/file-messenger-stores.js";
import type { MessengerEvent } from "../src/core/events.js";

/** Fast retries for tests (no timing assertions depend on them). */
export const testBackoff = { baseMs: 50, maxMs: 400 };

let counter = 0;
/** A unique account id per test run (accounts live in the shared NATS). */
export function uniqueId(name: string): string {
  counter++;
  return `${name}-${process.pid.toString(36)}-${Date.now().toString(36)}-${counter}`.slice(0, 60);
}

/** Records every event of a Messenger from creation on, and waits for matching ones. */
export class EventLog {
  readonly events: MessengerEvent[] = [];
  private waiters: { pred: (e: MessengerEvent) => boolean; resolve: (e: MessengerEvent) => void }[] = [];
  constructor(m: Messenger) {
    m.on((e) => {
      this.events.push(e);
      for (const w of [...this.waiters]) {
        if (w.pred(e)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(e);
        }
      }
    });
  }
  of<T extends MessengerEvent["type"]>(type: T): Extract<MessengerEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<MessengerEvent, { type: T }> => e.type === type);
  }
  /** The first recorded or future event matching `pred`. */
  wait<T extends MessengerEvent["type"]>(
    type: T,
    pred: (e: Extract<MessengerEvent, { type: T }>) => boolean = () => true,
    timeoutMs = 20_000,
  ): Promise<Extract<MessengerEvent, { type: T }>> {
    const match = (e: MessengerEvent) => e.type === type && pred(e as Extract<MessengerEvent, { type: T }>);
    const found = this.events.find(match);
    if (found) return Promise.resolve(found as Extract<MessengerEvent, { type: T }>);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for a ${type} event`)), timeoutMs);
      this.waiters.push({
        pred: match,
        resolve: (e) => {
          clearTimeout(t);
          resolve(e as Extract<MessengerEvent, { type: T }>);
        },
      });
    });
  }
}

export interface TestDevice {
  m: Messenger;
  log: EventLog;
  stores: MessengerStores;
  dir?: string;
}

const dirs: string[] = [];

export async function fileStores(): Promise<{ stores: MessengerStores; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "sealpost-messenger-"));
  dirs.push(dir);
  return { stores: createFileMessengerStores(dir, { fsync: false }), dir };
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

type Extra = Partial<Omit<MessengerOptions, "protocol" | "store">>;

export async function createDevice(serverUrl: string, accountId: string, opts: { file?: boolean; name?: string } & Extra = {}): Promise<TestDevice> {
  const { stores, dir } = opts.file ? await fileStores() : { stores: createMemoryMessengerStores(), dir: undefined };
  const m = await Messenger.createAccount({ serverUrl, accountId, deviceName: opts.name ?? "phone", backoff: testBackoff, ...opts, ...stores });
  return { m, log: new EventLog(m), stores, dir };
}

/** Links a new device to `existing`'s account (the existing device signs it in). */
export async function linkDevice(existing: Messenger, serverUrl: string, opts: { file?: boolean; name?: string } & Extra = {}): Promise<TestDevice> {
  const { stores, dir } = opts.file ? await fileStores() : { stores: createMemoryMessengerStores(), dir: undefined };
  const pending = await Messenger.startLink({
    serverUrl,
    accountId: existing.accountId,
    deviceName: opts.name ?? "laptop",
    backoff: testBackoff,
    ...opts,
    ...stores,
  });
  await existing.linkDevice(pending.code);
  const m = await pending.complete({ timeoutMs: 20_000, pollMs: 50 });
  return { m, log: new EventLog(m), stores, dir };
}

export function texts(ms: { body: { kind: string; text?: string } }[]): string[] {
  return ms.map((m) => (m.body.kind === "text" ? (m.body as { text: string }).text : `[${m.body.kind}]`));
}
