/**
 * The web client's numbers, beside the Node provider in the same run:
 *
 *   web_bundle_sdk      the SDK's browser entry (@sealpost/client/web), minified, gzip
 *   web_bundle_page     the chat page (clients/web, Vite build: JS + CSS), gzip
 *   session_setup       bundle -> first message -> decrypt, in Chromium (WebCrypto, the SDK's
 *                       browser provider, and @noble) vs Node (node:crypto)
 *   steady_1to1         encrypt + decrypt of 1 KiB in a session, in Chromium (both) vs Node
 *   pair_primitives     the bare primitives of one such pair: WebCrypto vs @noble in Chromium
 *                       (and node:crypto vs Node's WebCrypto in extra): what a WebCrypto provider
 *                       would change
 *   ratchet_key         a new X25519 key pair and one agreement, the same four ways
 *   body_digest         SHA-256 of a sealed 1 KiB body, the same four ways (the provider's sha256Async)
 *   ed25519_verify      one Ed25519 verification, the same four ways (the provider keeps @noble's)
 *
 * The crypto figures run the same workload code (sealpost-workload.ts) in both places, samples
 * interleaved (browser, Node, browser, ...). Node's @noble figure is kept in `extra`, so the
 * gap can be told apart into engine and provider. Writes bench/results/web.json; skipped with
 * a note when Chromium is not installed.
 *
 *   npx tsx bench/src/web-bench.ts [--quick|--smoke]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { build as esbuild } from "esbuild";
import { build as viteBuild } from "vite";
import { createNobleProvider, createNodeProvider } from "@sealpost/client/crypto";
import { chromiumInstalled, launchChromium, serveStatic } from "@sealpost/test-support/chromium";
import { benchMode, machineInfo, median, ratio, repoRoot, round, sampling, writeResult, type Figure } from "./result.js";
import { coreSetups, timedOps, type Runner } from "./sealpost-workload.js";
import {
  providerBodyDigest,
  providerPair,
  providerRatchetKey,
  providerVerify,
  webCryptoBodyDigest,
  webCryptoPair,
  webCryptoRatchetKey,
  webCryptoVerify,
} from "./web/pair-primitives.js";

const MODE = benchMode();
const { samples: SAMPLES, sampleMs: SAMPLE_MS, warmupMs: WARMUP_MS } = sampling(MODE);
const root = repoRoot();
const started = Date.now();
const machine = machineInfo();
const kib = (bytes: number) => round(bytes / 1024, 1);

async function sdkBundleGzip(): Promise<number> {
  const out = await esbuild({
    entryPoints: [join(root, "clients/ts/src/web.ts")],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  return gzipSync(out.outputFiles[0].contents).length;
}

async function pageBuild(): Promise<{ dir: string; gzip: number }> {
  const dir = mkdtempSync(join(tmpdir(), "sealpost-web-bench-"));
  await viteBuild({ configFile: join(root, "clients/web/vite.config.ts"), logLevel: "silent", build: { outDir: dir, emptyOutDir: true } });
  let gzip = 0;
  for (const f of readdirSync(join(dir, "assets"))) gzip += gzipSync(readFileSync(join(dir, "assets", f))).length;
  return { dir, gzip };
}

/**
 * Samples of several measurements taken in turn (A B C A B C ...) after one untimed warm-up
 * each, so load on the shared machine falls on all of them alike: per measurement, its ops/s.
 */
async function interleaved<K extends string>(measure: Record<K, (ms: number) => Promise<number>>): Promise<Record<K, number[]>> {
  const names = Object.keys(measure) as K[];
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (const n of names) await measure[n](WARMUP_MS);
  for (let i = 0; i < SAMPLES; i++) for (const n of names) samples[n].push(await measure[n](SAMPLE_MS));
  return samples;
}

async function main(): Promise<void> {
  const figures: Figure[] = [];
  const sdk = await sdkBundleGzip();
  const page = await pageBuild();
  rmSync(page.dir, { recursive: true, force: true });
  figures.push(
    {
      name: "web_bundle_sdk",
      implementation: "sealpost/web",
      value: kib(sdk),
      unit: "KiB gzip",
      samples: 1,
      note: "clients/ts/src/web.ts bundled for browsers with esbuild, minified",
    },
    {
      name: "web_bundle_page",
      implementation: "sealpost/web",
      value: kib(page.gzip),
      unit: "KiB gzip",
      samples: 1,
      note: "clients/web built with Vite: every JS and CSS asset",
    },
  );
  const extra: Record<string, unknown> = {};
  if (!chromiumInstalled) {
    extra.skipped = "no Chromium at /usr/bin/chromium: in-browser crypto not measured (apt-get install -y chromium)";
  } else {
    const code = (
      await esbuild({
        entryPoints: [join(root, "bench/src/web/crypto-page.ts")],
        bundle: true,
        format: "esm",
        platform: "browser",
        target: "es2022",
        write: false,
        logLevel: "silent",
      })
    ).outputFiles[0].text;
    const site = await serveStatic({ "/index.html": '<!doctype html><meta charset="utf-8"><script type="module" src="/app.js"></script>', "/app.js": code });
    const browser = await launchChromium();
    try {
      const tab = browser.context.pages()[0] ?? (await browser.context.newPage());
      await tab.goto(site.url);
      await tab.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true);
      const inBrowser = (name: string, ms: number) =>
        tab.evaluate(([n, t]) => (globalThis as unknown as { measure(n: string, t: number): Promise<number> }).measure(n, t), [name, ms] as const);
      const node = coreSetups(createNodeProvider());
      const nobleInNode = coreSetups(createNobleProvider());
      for (const name of ["session_setup", "steady_1to1"] as const) {
        const runners: Record<string, Runner> = { node: await node[name](), noble: await nobleInNode[name]() };
        const samples = await interleaved({
          browser: (ms) => inBrowser(`${name}_webcrypto`, ms),
          browserNoble: (ms) => inBrowser(name, ms),
          node: (ms) => timedOps(runners.node, ms),
          noble: (ms) => timedOps(runners.noble, ms),
        });
        const reference = {
          name: "sealpost/node (node:crypto)",
          value: Math.round(median(samples.node)),
          samples: SAMPLES,
          sampleValues: samples.node.map(Math.round),
        };
        for (const [implementation, values] of [
          ["sealpost/browser (Chromium, WebCrypto: the SDK's browser provider)", samples.browser],
          ["sealpost/browser (Chromium, @noble)", samples.browserNoble],
        ] as const) {
          const value = Math.round(median(values));
          figures.push({
            name,
            implementation,
            value,
            unit: "ops/s",
            samples: SAMPLES,
            sampleValues: values.map(Math.round),
            reference,
            ratio: ratio(value, reference.value),
          });
        }
        extra[`${name}_node_noble`] = { value: Math.round(median(samples.noble)), unit: "ops/s", sampleValues: samples.noble.map(Math.round) };
      }
      // What a WebCrypto provider would spend, beside @noble's primitives, in the page and in Node.
      const nodeProvider = createNodeProvider();
      const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
      const primitives = {
        pair_primitives: {
          unit: "pairs/s",
          node: { op: providerPair(nodeProvider) },
          nodeWebCrypto: { op: webCryptoPair(crypto.subtle, random) },
        },
        ratchet_key: {
          unit: "keys/s",
          node: { op: await providerRatchetKey(nodeProvider) },
          nodeWebCrypto: { op: await webCryptoRatchetKey(crypto.subtle, nodeProvider) },
        },
        body_digest: {
          unit: "digests/s",
          node: { op: providerBodyDigest(nodeProvider) },
          nodeWebCrypto: { op: webCryptoBodyDigest(crypto.subtle) },
        },
        ed25519_verify: {
          unit: "verifications/s",
          node: { op: await providerVerify(nodeProvider) },
          nodeWebCrypto: { op: await webCryptoVerify(crypto.subtle, nodeProvider) },
        },
      };
      const notes: Record<string, string> = {
        pair_primitives: "the primitives of one steady 1:1 pair alone (4 HMAC-SHA256, 4 AES-256-GCM, 2 SHA-256); bench/src/web/pair-primitives.ts",
        ratchet_key: "a new X25519 key pair and one agreement; WebCrypto also exports both halves (header and stored state)",
        body_digest: "SHA-256 of a sealed 1 KiB body (1,112 bytes): the provider's sha256Async (WebCrypto's digest in browsers)",
        ed25519_verify: "one signature over 200 bytes, the key imported each time: the provider keeps @noble's strict verification",
      };
      for (const [name, p] of Object.entries(primitives)) {
        const page = name === "pair_primitives" ? "pair" : name;
        const samples = await interleaved({
          webcrypto: (ms) => inBrowser(`${page}_webcrypto`, ms),
          noble: (ms) => inBrowser(`${page}_noble`, ms),
          node: (ms) => timedOps(p.node, ms),
          nodeWebCrypto: (ms) => timedOps(p.nodeWebCrypto, ms),
        });
        const value = Math.round(median(samples.webcrypto));
        const reference = Math.round(median(samples.noble));
        figures.push({
          name,
          implementation: "browser WebCrypto (Chromium, async, keys imported from raw bytes)",
          value,
          unit: p.unit,
          samples: SAMPLES,
          sampleValues: samples.webcrypto.map(Math.round),
          reference: {
            name: "browser @noble (the SDK's browser provider before WebCrypto)",
            value: reference,
            samples: SAMPLES,
            sampleValues: samples.noble.map(Math.round),
          },
          ratio: ratio(value, reference),
          note: notes[name],
        });
        extra[`${name}_node`] = { value: Math.round(median(samples.node)), unit: p.unit, sampleValues: samples.node.map(Math.round) };
        extra[`${name}_node_webcrypto`] = {
          value: Math.round(median(samples.nodeWebCrypto)),
          unit: p.unit,
          sampleValues: samples.nodeWebCrypto.map(Math.round),
        };
      }
      extra.chromium = browser.context.browser()?.version() ?? (await tab.evaluate(() => navigator.userAgent));
    } finally {
      await browser.close();
      await site.close();
    }
  }
  writeResult({
    benchmark: "web",
    mode: MODE,
    date: new Date(started).toISOString(),
    durationSec: round((Date.now() - started) / 1000, 1),
    machine,
    versions: { chromium: String(extra.chromium ?? "not installed") },
    method: `bundle sizes from one build; crypto: the same workload code in a Chromium page and in Node, ${SAMPLES} samples of ~${SAMPLE_MS} ms each, interleaved, after a ${WARMUP_MS} ms warm-up; value = median`,
    figures,
    extra,
  });
}

await main();
