/**
 * Regenerates conformance/vectors/*.json byte-identically (with the noble provider; the tests
 * check that the node provider produces the same bytes).
 *
 *   npx tsx clients/ts/src/tools/generate-vectors.ts          write the files
 *   npx tsx clients/ts/src/tools/generate-vectors.ts --check  exit 1 when a file would change
 */
import { createNobleProvider } from "../crypto/noble-provider.js";
import { buildAllVectors } from "./vector-builders.js";
import { writeVectorFiles } from "./vector-files.js";

writeVectorFiles(await buildAllVectors((random) => createNobleProvider({ random })), "vectors");
