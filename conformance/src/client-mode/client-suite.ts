import type { KnownFailing } from "../cases/known-failing.js";
import type { CaseResult } from "../runner/server-runner.js";

export interface ClientSuiteOptions {
  command: string;
  casesDir: string;
  vectorsDir: string;
  filter?: string[];
  knownFailing?: KnownFailing;
  onResult?: (r: CaseResult) => void;
}

export async function runClientSuite(_o: ClientSuiteOptions): Promise<CaseResult[]> {
  return [];
}
