/**
 * In the page: the browser entry of the SDK (connect-web, @noble, memory stores), driven by
 * the test through window.sdk. Everything it reports is plain data (no keys, no plaintext
 * beyond the test's own texts).
 */
import { Messenger, createMemoryMessengerStores, openIndexedDbStores, platformName, type IndexedDbStores, type MessengerEvent } from "../../src/web.js";

let m: Messenger | undefined;
let db: IndexedDbStores | undefined;
const events: MessengerEvent[] = [];
const backoff = { baseMs: 50, maxMs: 400 };
const listen = (x: Messenger) => x.on((e) => events.push(e));

const sdk = {
  platform: platformName,
  async create(serverUrl: string, accountId: string): Promise<{ accountId: string; deviceId: number; provider: string }> {
    m = await Messenger.createAccount({ serverUrl, accountId, deviceName: "browser", backoff, ...createMemoryMessengerStores() });
    listen(m);
    m.start();
    return { ...m.address, provider: m.provider.name };
  },
  async send(to: string, text: string): Promise<{ id: string; status: string }> {
    if (!m) throw new Error("no account");
    const sent = await m.sendText(to, text);
    await m.flush();
    const now = (await m.history(to)).find((x) => x.id === sent.id);
    return { id: sent.id, status: now?.status ?? "missing" };
  },
  received(): string[] {
    return events.flatMap((e) => (e.type === "message" && !e.message.outgoing && e.message.body.kind === "text" ? [e.message.body.text] : []));
  },
  /** A device whose stores are the IndexedDB database `name` (it survives a reload). */
  async createPersistent(serverUrl: string, accountId: string, name: string): Promise<void> {
    db = await openIndexedDbStores(name);
    m = await Messenger.createAccount({ serverUrl, accountId, deviceName: "browser", backoff, ...db });
    listen(m);
    m.start();
  },
  /** The device again from its database (after a reload), online. */
  async reopen(serverUrl: string, name: string): Promise<{ accountId: string; deviceId: number }> {
    db = await openIndexedDbStores(name);
    m = await Messenger.open({ serverUrl, backoff, ...db });
    listen(m);
    m.start();
    return m.address;
  },
  /** Offline (nothing in flight): queues a text durably and returns its id. */
  async queueOffline(to: string, text: string): Promise<{ id: string; status: string }> {
    if (!m) throw new Error("no account");
    await m.stop();
    const sent = await m.sendText(to, text);
    return { id: sent.id, status: sent.status };
  },
  async history(peer: string): Promise<{ text: string; outgoing: boolean; status: string }[]> {
    if (!m) throw new Error("no account");
    return (await m.history(peer)).map((x) => ({ text: x.body.kind === "text" ? x.body.text : `[${x.body.kind}]`, outgoing: x.outgoing, status: x.status }));
  },
  async flush(): Promise<void> {
    await m?.flush();
  },
  async close(): Promise<void> {
    await m?.close();
    db?.close();
  },
};

/** What the page offers the test (window.sdk). */
export type PageSdk = typeof sdk;

const g = globalThis as Record<string, unknown>;
g.sdk = sdk;
g.ready = true;
