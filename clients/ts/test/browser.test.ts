/**
 * The SDK in a browser: the browser entry bundles without any Node module, the protocol code
 * rebuilds every conformance vector byte for byte inside real Chromium (WebCrypto and @noble
 * providers), the WebCrypto provider agrees with @noble there, and a browser
 * Messenger (Connect over fetch, WebCrypto, memory stores) exchanges messages with a Node
 * Messenger through a real server (CORS, server-streaming Receive, unary Send), and one on
 * IndexedDB keeps its history, session and outbox across a reload.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleForBrowser, chromiumInstalled, CHROMIUM, openPage, type BrowserPage } from "./browser/harness.js";
import type { Page } from "playwright-core";
import type { PageSdk } from "./browser/sdk-page.js";
import { useMessengerHarness } from "./support/messenger-harness.js";
import { createDevice, uniqueId } from "./messenger-helpers.js";

const here = path.dirname(fileURLToPath(import.meta.url));

/** Runs `fn` in the page with its window.sdk (the function travels as source text, with `arg`). */
function inPage<T, A>(page: Page, fn: (s: PageSdk, arg: A) => Promise<T> | T, arg: A): Promise<T> {
  return page.evaluate(({ body, arg }) => new Function("s", "arg", `return (${body})(s, arg)`)((globalThis as unknown as { sdk: PageSdk }).sdk, arg), {
    body: fn.toString(),
    arg,
  }) as Promise<T>;
}
const vectorsDir = path.resolve(here, "../../../conformance/vectors");
const server = useMessengerHarness();

if (!chromiumInstalled) console.warn(`browser tests: no Chromium at ${CHROMIUM}; .ci/run installs Debian's chromium`);

describe("the browser entry", () => {
  it("bundles for the browser with no Node module and the web platform parts", async () => {
    const { code, metafile } = await bundleForBrowser(path.join(here, "../src/web.ts"));
    const inputs = Object.keys(metafile.inputs);
    expect(inputs.filter((i) => i.startsWith("node:") || /connect-node|node-provider|file-store|file-conversation-store/.test(i))).toEqual([]);
    expect(inputs.some((i) => i.endsWith("src/platform/web.ts"))).toBe(true);
    expect(inputs.some((i) => /@connectrpc\/connect-web/.test(i))).toBe(true);
    expect(code).not.toMatch(/from\s*["']node:/);
  });
});

describe.runIf(chromiumInstalled)("in Chromium", () => {
  let page: BrowserPage;

  describe("conformance vectors", () => {
    beforeAll(async () => {
      page = await openPage((await bundleForBrowser(path.join(here, "browser/vectors-page.ts"))).code);
    }, 60_000);
    afterAll(() => page?.close());

    it.each(["webcrypto", "noble"])(
      "every vector file rebuilds byte-identically with the %s provider",
      async (provider) => {
        const files = await page.page.evaluate(
          (p) => (globalThis as unknown as { buildVectors(p: string): Promise<Record<string, string>> }).buildVectors(p),
          provider,
        );
        expect(Object.keys(files).sort()).toEqual([
          "ed25519-rule.json",
          "envelope-inline.json",
          "envelope.json",
          "group-state.json",
          "key-signatures.json",
          "padding.json",
          "pq-ratchet.json",
          "pqxdh.json",
          "primitives.json",
          "ratchet.json",
          "safety-number.json",
          "sealed-entry.json",
          "sender-keys.json",
          "transparency.json",
        ]);
        for (const [name, text] of Object.entries(files)) expect(text, name).toBe(readFileSync(path.join(vectorsDir, name), "utf8"));
      },
      120_000,
    );
  });

  describe("the WebCrypto provider", () => {
    let agreement: BrowserPage;
    beforeAll(async () => {
      agreement = await openPage((await bundleForBrowser(path.join(here, "browser/vectors-page.ts"))).code);
    }, 60_000);
    afterAll(() => agreement?.close());

    it("agrees with @noble in Chromium on random inputs and on the edge cases engines could treat differently", async () => {
      const mismatches = await agreement.page.evaluate(
        (runs) => (globalThis as unknown as { checkAgreement(n: number): Promise<string[]> }).checkAgreement(runs),
        200,
      );
      expect(mismatches).toEqual([]);
    }, 120_000);
  });

  describe("a browser Messenger", () => {
    beforeAll(async () => {
      page = await openPage((await bundleForBrowser(path.join(here, "browser/sdk-page.ts"))).code);
    }, 60_000);
    afterAll(async () => {
      await page?.page.evaluate(() => (globalThis as unknown as { sdk: { close(): Promise<void> } }).sdk.close()).catch(() => undefined);
      await page?.close();
    });

    it("creates an account and exchanges messages with a Node device through a real server", async () => {
      const sdk = <T, A>(fn: (s: PageSdk, arg: A) => Promise<T> | T, arg: A) => inPage(page.page, fn, arg);
      const alice = uniqueId("web");
      const bob = await createDevice(server.url, uniqueId("bob"));
      bob.m.start();
      const arg = { url: server.url, alice, bob: bob.m.accountId };
      expect(await sdk((s) => s.platform, arg)).toBe("browser");
      expect((await sdk((s, a) => s.create(a.url, a.alice), arg)).provider).toBe("webcrypto");
      expect((await sdk((s, a) => s.send(a.bob, "hello from the browser"), arg)).status).not.toBe("queued");
      const got = await bob.log.wait("message", (e) => e.message.body.kind === "text" && e.message.body.text === "hello from the browser");
      expect(got.message.sender.accountId).toBe(alice);
      await bob.m.sendText(alice, "hello back");
      await expect.poll(() => sdk((s) => s.received(), arg), { timeout: 20_000 }).toContain("hello back");
      await bob.m.close();
    }, 120_000);
  });

  describe("a browser device on IndexedDB", () => {
    beforeAll(async () => {
      page = await openPage((await bundleForBrowser(path.join(here, "browser/sdk-page.ts"))).code);
    }, 60_000);
    afterAll(async () => {
      await page?.page.evaluate(() => (globalThis as unknown as { sdk: { close(): Promise<void> } }).sdk.close()).catch(() => undefined);
      await page?.close();
    });

    it("keeps history, its session and a message queued offline across a reload", async () => {
      type Arg = { url: string; alice: string; bob: string; db: string };
      const sdk = <T, A>(fn: (s: PageSdk, arg: A) => Promise<T> | T, arg: A) => inPage(page.page, fn, arg);
      const bob = await createDevice(server.url, uniqueId("bob"));
      bob.m.start();
      const arg: Arg = { url: server.url, alice: uniqueId("web"), bob: bob.m.accountId, db: uniqueId("sealpost-db") };
      await sdk((s, a) => s.createPersistent(a.url, a.alice, a.db), arg);
      expect((await sdk((s, a) => s.send(a.bob, "before the reload"), arg)).status).not.toBe("queued");
      await bob.log.wait("message", (e) => e.message.body.kind === "text" && e.message.body.text === "before the reload");
      await bob.m.sendText(arg.alice, "reply before the reload");
      await expect.poll(() => sdk((s) => s.received(), arg), { timeout: 20_000 }).toContain("reply before the reload");
      const queued = await sdk((s, a) => s.queueOffline(a.bob, "written offline, sent after the reload"), arg);
      expect(queued.status).toBe("queued");

      // The tab reloads: everything in memory is gone; the database is what is left.
      await page.page.reload();
      await page.page.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true);
      expect((await sdk((s, a) => s.reopen(a.url, a.db), arg)).accountId).toBe(arg.alice);
      await sdk((s) => s.flush(), arg);
      await bob.log.wait("message", (e) => e.message.id === queued.id);
      const history: { text: string; status: string }[] = await sdk((s, a) => s.history(a.bob), arg);
      expect(history.map((h) => h.text)).toEqual(["before the reload", "reply before the reload", "written offline, sent after the reload"]);
      expect(history.find((h) => h.text === "written offline, sent after the reload")?.status).not.toBe("queued");
      // Same identity and session: bob saw no key change, and his reply decrypts in the reloaded tab.
      expect(bob.log.of("key-change")).toEqual([]);
      await bob.m.sendText(arg.alice, "reply after the reload");
      await expect.poll(() => sdk((s) => s.received(), arg), { timeout: 20_000 }).toContain("reply after the reload");
      await bob.m.close();
    }, 120_000);
  });
});
