/**
 * Server mode end to end: builds the targets (protocol x stack), runs the cases on each
 * concurrently (they share nothing but the server) and returns every result.
 */
import type { Case } from "../cases/case-format.js";
import { globMatch, type KnownFailing } from "../cases/known-failing.js";
import { ConnectEsStack, type ConnectProtocol } from "../stacks/connect-es-stack.js";
import { GrpcJsStack } from "../stacks/grpc-js-stack.js";
import type { Stack } from "../stacks/stack.js";
import { defaultProtoDir } from "./paths.js";
import { runCases, type CaseResult } from "./server-runner.js";

export type StackName = "connect-es" | "grpc-js";
export const allStacks: StackName[] = ["connect-es", "grpc-js"];
export const allProtocols: ConnectProtocol[] = ["connect", "grpc", "grpc-web"];

export interface TargetSpec {
  stack: StackName;
  protocol: ConnectProtocol;
  httpVersion?: "1.1" | "2";
  codec?: "json" | "proto";
}

/** Every stack that can speak each protocol (grpc-js speaks only gRPC). */
export function targetsFor(protocols: ConnectProtocol[], stacks: StackName[], over: Pick<TargetSpec, "httpVersion" | "codec"> = {}): TargetSpec[] {
  const out: TargetSpec[] = [];
  for (const protocol of protocols)
    for (const stack of stacks) {
      if (stack === "grpc-js" && protocol !== "grpc") continue;
      out.push({ stack, protocol, ...(stack === "connect-es" ? over : {}) });
    }
  return out;
}

export function makeStack(url: string, t: TargetSpec, protoDir = defaultProtoDir): Stack {
  return t.stack === "grpc-js"
    ? new GrpcJsStack({ baseUrl: url, protoDir })
    : new ConnectEsStack({ baseUrl: url, protocol: t.protocol, httpVersion: t.httpVersion, codec: t.codec });
}

export interface SuiteOptions {
  url: string;
  targets: TargetSpec[];
  cases: Case[];
  /** Only cases whose name matches one of these globs. */
  filter?: string[];
  knownFailing?: KnownFailing;
  protoDir?: string;
  onResult?: (r: CaseResult) => void;
}

export function filterCases(cases: Case[], filter: string[] | undefined): Case[] {
  if (!filter || filter.length === 0) return cases;
  return cases.filter((c) => filter.some((g) => globMatch(g, c.name)));
}

export async function runServerSuite(o: SuiteOptions): Promise<CaseResult[]> {
  const cases = filterCases(o.cases, o.filter);
  const perTarget = await Promise.all(
    o.targets.map(async (t) => {
      const stack = makeStack(o.url, t, o.protoDir);
      try {
        return await runCases(stack, cases, { knownFailing: o.knownFailing, onResult: o.onResult });
      } finally {
        await stack.close();
      }
    }),
  );
  return perTarget.flat();
}
