/**
 * Regenerates conformance/vectors/sender-keys.json and group-state.json byte-identically
 * (noble provider; clients/ts/test/groups-vectors.test.ts checks the node provider agrees).
 *
 *   npx tsx clients/ts/src/tools/generate-group-vectors.ts          write the files
 *   npx tsx clients/ts/src/tools/generate-group-vectors.ts --check  exit 1 when a file would change
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createNobleProvider } from "../crypto/noble-provider.js";
import { buildGroupVectors } from "./group-vector-builders.js";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../conformance/vectors");
const check = process.argv.includes("--check");
let changed = 0;
for (const [name, value] of Object.entries(buildGroupVectors((random) => createNobleProvider({ random })))) {
  const file = path.join(dir, name);
  const text = JSON.stringify(value, null, 2) + "\n";
  const old = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
  if (old === text) continue;
  changed++;
  if (check) console.error(`${name} differs from what the generator produces`);
  else {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(file, text);
    console.log(`wrote ${name}`);
  }
}
if (check && changed > 0) process.exit(1);
if (changed === 0) console.log("group vectors up to date");
