/**
 * The chat page end to end in real Chromium: two browser profiles (alice, bob; each its own
 * IndexedDB) and one CLI device (carol) on a real server. A message each way, read receipts, a
 * file, a reload that keeps history and sessions, going offline and back with everything
 * delivered, a group of three, and a third profile linked as a new device of the CLI's account
 * (code and QR on the page), which alice sees as a key change. Screenshots of the key screens go to clients/web/test-output.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTestServer } from "@sealpost/test-support";
import { chromiumInstalled, launchChromium, serveStatic, type Chromium } from "@sealpost/test-support/chromium";

const webDir = fileURLToPath(new URL("..", import.meta.url));
const shots = join(webDir, "test-output");
const cliBin = fileURLToPath(new URL("../../ts/bin/sealpost.js", import.meta.url));
const run = Date.now().toString(36);
const acct = (name: string) => `${name}-${run}`;
const server = useTestServer();

/** One browser profile with the page open. */
interface Device {
  browser: Chromium;
  page: Page;
  errors: string[];
}

describe.runIf(chromiumInstalled)("the chat page", () => {
  let site: { url: string; close(): Promise<void> };
  let outDir: string;
  let home: string;
  let alice: Device;
  let bob: Device;

  const openDevice = async (): Promise<Device> => {
    const browser = await launchChromium();
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${site.url}?server=${encodeURIComponent(server.url)}`);
    return { browser, page, errors };
  };
  const ready = (d: Device) => d.page.waitForFunction(() => (globalThis as { sealpostReady?: boolean }).sealpostReady === true, undefined, { timeout: 30_000 });
  const createAccount = async (d: Device, account: string) => {
    await d.page.locator("#setup").waitFor();
    await d.page.fill("#account", account);
    await d.page.click("#create");
    await ready(d);
  };
  const openChat = async (d: Device, peer: string) => {
    await d.page.fill("#new-chat input[name=peer]", peer);
    await d.page.click("#new-chat button");
    await d.page.locator("#title", { hasText: peer }).waitFor();
  };
  const send = async (d: Device, text: string) => {
    await d.page.fill("#compose input[name=text]", text);
    await d.page.click("#compose button");
  };
  const message = (d: Device, text: string) => d.page.locator("#messages li", { hasText: text });
  const shot = (d: Device, name: string) => d.page.screenshot({ path: join(shots, `${name}.png`) });

  const cli = (args: string[]) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      const child = spawn(process.execPath, [cliBin, "--store", join(home, "carol"), "--server", server.url, ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (b: Buffer) => (out += b.toString()));
      child.stderr.on("data", (b: Buffer) => (out += b.toString()));
      child.on("close", (code) => resolve({ code: code ?? -1, out }));
    });

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    outDir = mkdtempSync(join(tmpdir(), "sealpost-web-"));
    home = mkdtempSync(join(tmpdir(), "sealpost-web-cli-"));
    await build({ configFile: join(webDir, "vite.config.ts"), logLevel: "silent", build: { outDir, emptyOutDir: true } });
    site = await serveStatic(outDir);
    alice = await openDevice();
    bob = await openDevice();
    await shot(alice, "1-setup");
    await createAccount(alice, acct("alice"));
    await createAccount(bob, acct("bob"));
    expect((await cli(["init", acct("carol")])).code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await alice?.browser.close();
    await bob?.browser.close();
    await site?.close();
    rmSync(outDir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });

  it("a message each way; the sender sees it read once the recipient opened the conversation", async () => {
    await openChat(alice, acct("bob"));
    await send(alice, "hi bob, from a browser");
    await bob.page.locator(`#conversations li[data-conversation="direct:${acct("alice")}"]`).click();
    await message(bob, "hi bob, from a browser").waitFor();
    await send(bob, "hi alice, from another browser");
    await message(alice, "hi alice, from another browser").waitFor();
    // Bob got Alice's access key with her message: his answer went sealed, and both pages say so.
    await message(bob, "hi alice, from another browser").locator(".meta", { hasText: "sealed" }).waitFor();
    await message(alice, "hi alice, from another browser").locator(".meta", { hasText: "sealed" }).waitFor();
    await message(alice, "hi bob, from a browser").locator(".meta", { hasText: "read" }).waitFor();
    await shot(alice, "2-conversation");
    expect(alice.errors.concat(bob.errors)).toEqual([]);
  }, 60_000);

  it("warns when a contact's key transparency head disagrees with this browser's view of the log", async () => {
    // Bob's stored view of the log, rewritten in his IndexedDB to one no genuine head extends
    // (as if the server had shown him a forked log); put back afterwards.
    const key = ["conversations/transparency", "head"];
    const rewrite = (value: string | undefined) =>
      bob.page.evaluate(
        ([k, v]) =>
          new Promise<string>((resolve, reject) => {
            const open = indexedDB.open("sealpost-device");
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
              const tx = open.result.transaction("records", "readwrite");
              const store = tx.objectStore("records");
              const get = store.get(k as unknown as IDBValidKey);
              get.onsuccess = () => {
                const before = get.result as string;
                const kept = JSON.parse(before);
                store.put(v ?? JSON.stringify({ ...kept, treeSize: 1, rootHash: { $b: btoa("\u0003".repeat(32)) } }), k as unknown as IDBValidKey);
                tx.oncomplete = () => (open.result.close(), resolve(before));
              };
              tx.onerror = () => reject(tx.error);
            };
          }),
        [key, value] as const,
      );
    const original = await rewrite(undefined);
    try {
      expect(await bob.page.locator("#untrusted").isHidden()).toBe(true);
      await send(alice, "does our view of the log agree?");
      await message(bob, "does our view of the log agree?").waitFor();
      await bob.page.locator("#untrusted", { hasText: "inconsistent-log" }).waitFor();
      expect(await bob.page.locator("#untrusted").textContent()).toContain(`${acct("alice")}'s devices could not be verified`);
    } finally {
      await rewrite(original);
    }
  }, 60_000);

  it("sets who may send sealed mail: with 'nobody', the other side's next message arrives unsealed", async () => {
    await bob.page.selectOption("#sealed-mode", "off");
    await expect.poll(() => bob.page.locator("#sealed-state").textContent(), { timeout: 10_000 }).toBe("");
    await send(alice, "while bob takes no sealed mail");
    await message(bob, "while bob takes no sealed mail").waitFor();
    const meta = message(alice, "while bob takes no sealed mail").locator(".meta");
    await meta.filter({ hasText: /sent|delivered|read/ }).waitFor();
    expect(await meta.textContent()).not.toContain("sealed");
    await bob.page.selectOption("#sealed-mode", "contacts");
    await expect.poll(() => bob.page.locator("#sealed-state").textContent(), { timeout: 10_000 }).toBe("");
    expect(await bob.page.locator("#sealed-mode").inputValue()).toBe("contacts");
  }, 60_000);

  it("shows the other side typing, and no longer once the text is cleared", async () => {
    await alice.page.fill("#compose input[name=text]", "thinking");
    await bob.page.locator("#typing", { hasText: `${acct("alice")} is typing` }).waitFor();
    await alice.page.fill("#compose input[name=text]", "");
    await expect.poll(() => bob.page.locator("#typing").textContent(), { timeout: 10_000 }).toBe("");
  }, 30_000);

  it("shows the safety number, the same on both sides", async () => {
    const a = await alice.page.locator("#safety").textContent();
    const b = await bob.page.locator("#safety").textContent();
    expect(a).toMatch(/^safety number: [0-9 ]{60,}/);
    expect(a).toBe(b);
  });

  it("sends a file with upload progress; it arrives with its name and size", async () => {
    const content = Buffer.alloc(300_000, 7);
    // Every value the progress bar shows (the value attribute reflects the property).
    await alice.page.evaluate(() => {
      const bar = document.getElementById("progress") as HTMLProgressElement;
      const seen: number[] = [];
      (globalThis as unknown as { progressSeen: number[] }).progressSeen = seen;
      new MutationObserver(() => seen.push(bar.value)).observe(bar, { attributes: true, attributeFilter: ["value"] });
    });
    await alice.page.setInputFiles("#compose input[name=file]", { name: "photo.bin", mimeType: "application/octet-stream", buffer: content });
    await alice.page.fill("#compose input[name=text]", "the photo");
    await alice.page.click("#compose button");
    await message(bob, "photo.bin").waitFor();
    expect(await message(bob, "photo.bin").textContent()).toContain(`photo.bin (${content.length} bytes) the photo`);
    const progress = await alice.page.evaluate(() => (globalThis as unknown as { progressSeen: number[] }).progressSeen);
    expect(progress).toContain(1); // the whole file reached the server (then the bar resets to 0)
  }, 60_000);

  it("a reload keeps history and sessions", async () => {
    await bob.page.reload();
    await ready(bob);
    await bob.page.locator(`#conversations li[data-conversation="direct:${acct("alice")}"]`).click();
    await message(bob, "hi bob, from a browser").waitFor();
    await send(alice, "after bob's reload");
    await message(bob, "after bob's reload").waitFor();
    await send(bob, "bob still has his session");
    await message(alice, "bob still has his session").waitFor();
  }, 60_000);

  it("offline: a banner, and everything sent meanwhile is delivered when back", async () => {
    await bob.browser.context.setOffline(true);
    try {
      await bob.page.locator("#offline").waitFor({ state: "visible", timeout: 30_000 });
      await send(bob, "written while offline");
      await send(alice, "sent while bob was offline");
      await message(bob, "written while offline").locator(".meta", { hasText: "queued" }).waitFor();
      await new Promise((r) => setTimeout(r, 1_000)); // still queued a second later: nothing gets out
      expect(await message(bob, "written while offline").locator(".meta").textContent()).toMatch(/queued$/);
      await shot(bob, "3-offline");
    } finally {
      await bob.browser.context.setOffline(false); // a failure here must not take the later tests offline too
    }
    await bob.page.locator("#offline").waitFor({ state: "hidden", timeout: 30_000 });
    await message(bob, "sent while bob was offline").waitFor({ timeout: 30_000 });
    await message(alice, "written while offline").waitFor({ timeout: 30_000 });
  }, 90_000);

  it("a group of three (two browsers and the CLI): one message reaches every member", async () => {
    const listen = spawn(process.execPath, [cliBin, "--store", join(home, "carol"), "--server", server.url, "listen"], { stdio: ["ignore", "pipe", "pipe"] });
    let heard = "";
    listen.stdout.on("data", (b: Buffer) => (heard += b.toString()));
    try {
      await alice.page.fill("#new-group input[name=title]", "lunch");
      await alice.page.fill("#new-group input[name=members]", `${acct("bob")}, ${acct("carol")}`);
      await alice.page.click("#new-group button");
      await alice.page.locator("#title", { hasText: "lunch (group)" }).waitFor();
      await send(alice, "hello group");
      await bob.page.locator("#conversations li", { hasText: "lunch (group)" }).click();
      await message(bob, "hello group").waitFor();
      await expect.poll(() => heard, { timeout: 30_000 }).toContain("hello group");
      await shot(bob, "4-group");
    } finally {
      listen.kill("SIGINT");
      await new Promise((r) => listen.once("close", r));
    }
  }, 90_000);

  it("a second tab of the same profile takes the device over; the first says so instead of looking connected", async () => {
    const second = await bob.browser.context.newPage();
    try {
      await second.goto(bob.page.url());
      await second.waitForFunction(() => (globalThis as { sealpostReady?: boolean }).sealpostReady === true, undefined, { timeout: 30_000 });
      await bob.page.locator("#stopped", { hasText: "open in another tab" }).waitFor({ state: "visible", timeout: 30_000 });
      // The new tab receives.
      await openChat(alice, acct("bob"));
      await send(alice, "to bob's new tab");
      await second.locator(`#conversations li[data-conversation="direct:${acct("alice")}"]`).click();
      await second.locator("#messages li", { hasText: "to bob's new tab" }).waitFor();
    } finally {
      await second.close();
    }
  }, 90_000);

  it("links a browser to the CLI's account with the code it shows (and its QR), with its history; contacts see a key change", async () => {
    await openChat(alice, acct("carol"));
    await send(alice, "hi carol");
    await message(alice, "hi carol")
      .locator(".meta", { hasText: /sent|delivered|read/ })
      .waitFor();
    const carolWeb = await openDevice();
    try {
      await carolWeb.page.locator("#setup").waitFor();
      await carolWeb.page.fill("#account", acct("carol"));
      await carolWeb.page.click("#link");
      await carolWeb.page.locator("#qr svg").waitFor();
      const code = await carolWeb.page.locator("#linkcode").inputValue();
      expect(code.length).toBeGreaterThan(100);
      await shot(carolWeb, "5-link");
      const linked = await cli(["link", "--code", code, "--history"]);
      expect(linked.code, linked.out).toBe(0);
      await ready(carolWeb);
      expect(await carolWeb.page.locator("#me").textContent()).toBe(`${acct("carol")} · device 2`);
      // The CLI's history came along: the group and what was said in it.
      await carolWeb.page.locator("#conversations li", { hasText: "lunch (group)" }).click();
      await message(carolWeb, "hello group").waitFor({ timeout: 30_000 });
      // Mail to carol now reaches the browser too.
      await send(alice, "hi carol's browser");
      await carolWeb.page.locator(`#conversations li[data-conversation="direct:${acct("alice")}"]`).click();
      await message(carolWeb, "hi carol's browser").waitFor();
      // Alice is warned that carol's devices changed.
      await alice.page.locator("#key-warning", { hasText: acct("carol") }).waitFor({ state: "visible", timeout: 30_000 });
      await shot(alice, "6-key-change");
    } finally {
      await carolWeb.browser.close();
    }
  }, 120_000);
});
