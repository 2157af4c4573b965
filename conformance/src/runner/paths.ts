/** Default locations, relative to this package, so the runner works from any cwd. */
import { fileURLToPath } from "node:url";

export const packageDir = fileURLToPath(new URL("../../", import.meta.url));
export const defaultCasesDir = fileURLToPath(new URL("../../cases/", import.meta.url));
export const defaultClientCasesDir = fileURLToPath(new URL("../../client-cases/", import.meta.url));
export const defaultVectorsDir = fileURLToPath(new URL("../../vectors/", import.meta.url));
export const defaultKnownFailing = fileURLToPath(new URL("../../known-failing.txt", import.meta.url));
export const defaultProtoDir = fileURLToPath(new URL("../../../proto/", import.meta.url));
