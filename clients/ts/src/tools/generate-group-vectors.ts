/**
 * Regenerates conformance/vectors/sender-keys.json and group-state.json byte-identically
 * (noble provider; clients/ts/test/groups-vectors.test.ts checks the node provider agrees).
 *
 *   npx tsx clients/ts/src/tools/generate-group-vectors.ts          write the files
 *   npx tsx clients/ts/src/tools/generate-group-vectors.ts --check  exit 1 when a file would change
 */
import { createNobleProvider } from "../crypto/noble-provider.js";
import { buildGroupVectors } from "./group-vector-builders.js";
import { writeVectorFiles } from "./vector-files.js";

writeVectorFiles(await buildGroupVectors((random) => createNobleProvider({ random })), "group vectors");
