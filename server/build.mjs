#!/usr/bin/env node
/**
 * Builds the server into one ES module, server/dist/sealpost-server.mjs, for `npm start`.
 *
 * Running the TypeScript through tsx costs every instance a module-loader worker thread and
 * an esbuild service process: an idle server measured ~110 MB RSS plus ~12 MB for the
 * esbuild child under tsx, ~71 MB built (docs/OPERATIONS.md). Our own code and the
 * workspace packages (@sealpost/*, TypeScript sources) are bundled; every npm package stays
 * an import resolved from node_modules at run time, as under tsx.
 *
 *   node server/build.mjs [--entry <file>] [--out <file>] [--server-src <dir>] [--inline-sourcemap]
 *
 * --server-src builds `entry` against another checkout's server/src (the benchmark's
 * before/after comparison): imports that resolve into this checkout's server/src are taken
 * from that directory instead.
 */
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const entry = path.resolve(arg("--entry", path.join(root, "server/src/main.ts")));
const outfile = path.resolve(arg("--out", path.join(root, "server/dist/sealpost-server.mjs")));
const serverSrc = arg("--server-src");

/** npm packages stay external; relative paths and @sealpost/* workspaces are bundled. */
const externalPackages = {
  name: "external-packages",
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith("@sealpost/") || args.path.startsWith("node:")) return undefined;
      return { path: args.path, external: true };
    });
  },
};

const ownSrc = path.join(root, "server/src") + path.sep;
/** Redirects this checkout's server/src to --server-src. */
const otherServerSrc = {
  name: "other-server-src",
  setup(b) {
    b.onResolve({ filter: /^\./ }, (args) => {
      const target = path.resolve(args.resolveDir, args.path);
      if (!target.startsWith(ownSrc)) return undefined;
      const moved = path.join(path.resolve(serverSrc), target.slice(ownSrc.length)).replace(/\.js$/, ".ts");
      return { path: moved };
    });
  },
};

const result = await build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: process.argv.includes("--inline-sourcemap") ? "inline" : true,
  plugins: serverSrc ? [externalPackages, otherServerSrc] : [externalPackages],
  logLevel: "warning",
  metafile: true,
});
const bytes = result.metafile.outputs[path.relative(process.cwd(), outfile)]?.bytes;
if (process.argv.includes("--verbose")) process.stderr.write(`built ${outfile}${bytes ? ` (${Math.round(bytes / 1024)} KiB)` : ""}\n`);
