/**
 * sealpost-conformance: `npx sealpost-conformance --help`.
 *
 *   server  run the server cases against a URL over Connect, gRPC and/or gRPC-Web
 *   client  run a client under test (any binary speaking the harness protocol)
 *
 * Exit status: 0 when every case passed or is listed as known-failing, 1 when any case
 * failed or a known-failing case passed, 2 for usage errors.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { loadCases } from "./cases/load-cases.js";
import { KnownFailing, globMatch } from "./cases/known-failing.js";
import { allProtocols, allStacks, filterCases, runServerSuite, targetsFor, type StackName } from "./runner/server-suite.js";
import { defaultCasesDir, defaultClientCasesDir, defaultProtoDir, defaultVectorsDir } from "./runner/paths.js";
import { isRunOk, summaryTable } from "./report/summary-table.js";
import { junitXml } from "./report/junit-xml.js";
import type { ConnectProtocol } from "./stacks/connect-es-stack.js";
import type { CaseResult } from "./runner/server-runner.js";
import { clientCases, runClientSuite } from "./client-mode/client-suite.js";

const helpText = `Usage:
  sealpost-conformance server --url <url> [options]
  sealpost-conformance client --command '<cmd> [args]' [options]

Server mode runs the cases in conformance/cases/*.yaml against a running server:
  --url <url>              base URL, e.g. http://127.0.0.1:8080 (https:// for TLS)
  --protocol <list>        comma-separated: connect,grpc,grpc-web (default: all three)
  --stack <list>           client stacks: connect-es,grpc-js (default: both; grpc-js
                           speaks gRPC only)
  --http-version <1.1|2>   HTTP version for Connect and gRPC-Web (default 1.1; gRPC uses 2)
  --codec <json|proto>     codec for Connect and gRPC-Web (default: json for Connect,
                           proto for gRPC-Web)
  --cases <dir>            case directory (default: the suite's own cases)
  --proto <dir>            proto root for the grpc-js stack (default: the suite's proto/)

Client mode starts the client under test and speaks the harness protocol on its
stdin/stdout (proto/sealpost/conformance/v1/client_harness.proto; docs/CONFORMANCE.md):
  --command <cmd>          command line of the client under test (run through the shell)
  --cases <dir>            client case directory (default: conformance/client-cases)
  --vectors <dir>          crypto vector directory (default: conformance/vectors)

Both modes:
  --filter <glob>          run only cases whose name matches (repeatable)
  --known-failing <file>   globs of cases expected to fail (one per line, # comments,
                           optional "@ <target-glob>"); a listed case that passes is an error
  --junit <file>           write JUnit XML results
  --list                   print the cases (name and the behaviour each checks), run nothing
  --quiet                  print only the summary
  -h, --help               print this help

Exit status: 0 all passed (or known-failing), 1 failures or unexpected passes, 2 usage.`;

function fail(message: string): never {
  process.stderr.write(`sealpost-conformance: ${message}\n\n${helpText}\n`);
  process.exit(2);
}

function list<T extends string>(value: string | undefined, allowed: readonly T[], what: string): T[] {
  if (!value) return [...allowed];
  const items = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const i of items) if (!allowed.includes(i as T)) fail(`unknown ${what} "${i}" (expected ${allowed.join(", ")})`);
  return items as T[];
}

const OPTIONS = {
  url: { type: "string" },
  protocol: { type: "string" },
  stack: { type: "string" },
  "http-version": { type: "string" },
  codec: { type: "string" },
  cases: { type: "string" },
  proto: { type: "string" },
  command: { type: "string" },
  vectors: { type: "string" },
  filter: { type: "string", multiple: true },
  "known-failing": { type: "string" },
  junit: { type: "string" },
  quiet: { type: "boolean" },
  list: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

function parseOptions(argv: string[]) {
  return parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(argv);
  } catch (err) {
    fail((err as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (v.help || positionals.length === 0) {
    process.stdout.write(helpText + "\n");
    return v.help ? 0 : 2;
  }
  const mode = positionals[0];
  const knownFailing = KnownFailing.load(v["known-failing"]);
  const progress = (r: CaseResult) => {
    if (!v.quiet) process.stdout.write(`${r.status.padEnd(15)} ${r.target} ${r.name}${r.status === "fail" ? `: ${r.message}` : ""}\n`);
  };
  if (v.list) {
    const named =
      mode === "client"
        ? clientCases(v.cases ?? defaultClientCasesDir, v.vectors ?? defaultVectorsDir)
        : filterCases(loadCases(v.cases ?? defaultCasesDir), v.filter);
    for (const c of named) if (!v.filter?.length || v.filter.some((g) => globMatch(g, c.name))) process.stdout.write(`${c.name}\n    ${c.checks}\n`);
    return 0;
  }
  let results: CaseResult[];
  if (mode === "server") {
    if (!v.url) fail("server mode needs --url");
    const httpVersion = v["http-version"];
    if (httpVersion && httpVersion !== "1.1" && httpVersion !== "2") fail(`--http-version must be 1.1 or 2`);
    const codec = v.codec;
    if (codec && codec !== "json" && codec !== "proto") fail(`--codec must be json or proto`);
    const targets = targetsFor(list<ConnectProtocol>(v.protocol, allProtocols, "protocol"), list<StackName>(v.stack, allStacks, "stack"), {
      httpVersion: httpVersion as "1.1" | "2" | undefined,
      codec: codec as "json" | "proto" | undefined,
    });
    if (targets.length === 0) fail("no target: grpc-js speaks only gRPC");
    results = await runServerSuite({
      url: v.url,
      targets,
      cases: loadCases(v.cases ?? defaultCasesDir),
      filter: v.filter,
      knownFailing,
      protoDir: v.proto ?? defaultProtoDir,
      onResult: progress,
    });
  } else if (mode === "client") {
    if (!v.command) fail("client mode needs --command");
    results = await runClientSuite({
      command: v.command,
      casesDir: v.cases ?? defaultClientCasesDir,
      vectorsDir: v.vectors ?? defaultVectorsDir,
      filter: v.filter,
      knownFailing,
      onResult: progress,
    });
  } else fail(`unknown mode "${mode}" (expected server or client)`);
  process.stdout.write("\n" + summaryTable(results) + "\n");
  if (v.junit) writeFileSync(v.junit, junitXml(results));
  return isRunOk(results) ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`sealpost-conformance: ${(err as Error)?.stack ?? err}\n`);
    process.exit(2);
  },
);
