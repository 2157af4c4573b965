/**
 * The SDK's browser tests: a page script bundled with esbuild for the browser (the package's
 * "browser" condition, so `#platform` is the web one), served on localhost and opened in real
 * Chromium (test-support/chromium).
 */
import { build, type Metafile } from "esbuild";
import type { Page } from "playwright-core";
import { launchChromium, serveStatic } from "@sealpost/test-support/chromium";

export { CHROMIUM, chromiumInstalled } from "@sealpost/test-support/chromium";

/** Bundles `entry` as the browser would load it; the metafile names every input. */
export async function bundleForBrowser(entry: string): Promise<{ code: string; metafile: Metafile }> {
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  return { code: out.outputFiles[0].text, metafile: out.metafile };
}

export interface BrowserPage {
  page: Page;
  url: string;
  close(): Promise<void>;
}

/** Serves `code` as /app.js under an empty page and opens it; resolves once the script set `ready`. */
export async function openPage(code: string): Promise<BrowserPage> {
  const html = `<!doctype html><meta charset="utf-8"><title>sealpost test</title><script type="module" src="/app.js"></script>`;
  const site = await serveStatic({ "/index.html": html, "/app.js": code });
  const browser = await launchChromium();
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(site.url);
  await page
    .waitForFunction(() => (globalThis as { ready?: boolean }).ready === true, undefined, { timeout: 30_000 })
    .catch((e) => {
      throw new Error(`page did not get ready: ${e}; page errors: ${errors.join("; ")}`);
    });
  return {
    page,
    url: site.url,
    async close() {
      await browser.close();
      await site.close();
    },
  };
}
