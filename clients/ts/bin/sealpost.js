#!/usr/bin/env node
// `sealpost`: runs src/cli/sealpost.ts under tsx (the workspace runs TypeScript sources
// directly, no build step), so `npx sealpost` works after `npm ci` at the repository root.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const cli = fileURLToPath(new URL("../src/cli/sealpost.ts", import.meta.url));
let tsx;
try {
  tsx = require.resolve("tsx/cli");
} catch {
  process.stderr.write("sealpost: tsx is not installed; run `npm ci` at the repository root\n");
  process.exit(1);
}
const child = spawn(process.execPath, [tsx, cli, ...process.argv.slice(2)], { stdio: "inherit" });
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
