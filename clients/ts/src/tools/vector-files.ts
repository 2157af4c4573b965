/**
 * Writing (or, with --check, comparing) the generated conformance/vectors/*.json files, shared
 * by generate-vectors.ts and generate-group-vectors.ts: pretty-printed JSON with a final
 * newline, only the files whose bytes would change are written, and --check exits 1 when any
 * would.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../conformance/vectors");

/** Writes `files` (name -> JSON value) into conformance/vectors, or checks them with --check; `label` names the set in the "up to date" line. */
export function writeVectorFiles(files: Record<string, unknown>, label: string): void {
  const check = process.argv.includes("--check");
  let changed = 0;
  for (const [name, value] of Object.entries(files)) {
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
  if (changed === 0) console.log(`${label} up to date`);
}
