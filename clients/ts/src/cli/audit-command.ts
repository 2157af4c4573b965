/**
 * `sealpost audit`: checks the server's whole key transparency log (directory/log-audit.ts).
 * Needs no account. With a store, the log key and tree head that store's device verified are
 * what the log must match; --log-key HEX requires a key given out of band.
 */
import { existsSync } from "node:fs";
import { createNodeProvider } from "../crypto/node-provider.js";
import { fromHex, toHex } from "../crypto/bytes.js";
import { auditLog } from "../directory/log-audit.js";
import type { MessengerStores } from "../messenger/messenger.js";
import { ServerApi } from "../transport/server-api.js";
import { CliError, EXIT_FAILED, EXIT_USAGE } from "./send-outcome.js";

export async function auditCommand(
  storeDir: string,
  stores: MessengerStores,
  server: string | undefined,
  defaultServer: string,
  logKeyHex: string | undefined,
  io: { out: (line: string) => void; err: (line: string) => void },
): Promise<number> {
  const account = existsSync(storeDir) ? await stores.store.getAccount() : undefined;
  const kept = account ? await stores.store.getTransparency() : undefined;
  let logKey = kept?.logKey;
  if (logKeyHex !== undefined) {
    if (!/^[0-9a-f]{64}$/i.test(logKeyHex)) throw new CliError(EXIT_USAGE, `--log-key takes 32 bytes in hex (64 characters), not ${JSON.stringify(logKeyHex)}`);
    logKey = fromHex(logKeyHex.toLowerCase());
  }
  const baseUrl = server ?? account?.serverUrl ?? defaultServer;
  const p = createNodeProvider();
  const api = new ServerApi({ baseUrl, provider: p, now: Date.now });
  let lastShown = 0;
  const report = await auditLog(api, p, {
    logKey,
    previous: kept ? { treeSize: kept.treeSize, rootHash: kept.rootHash } : undefined,
    onProgress: (read, of) => {
      if (read - lastShown >= 10_000 || read === of) {
        lastShown = read;
        io.err(`read ${read}/${of} leaves`);
      }
    },
  }).catch((err: unknown) => {
    throw new CliError(EXIT_FAILED, `could not read the log from ${baseUrl}: ${(err as Error).message}`);
  });
  const source = logKeyHex !== undefined ? "given" : kept ? "the one this device pinned" : "as the server names it; compare it out of band";
  io.out(`log key ${toHex(report.logKey)} (${source})`);
  io.out(
    `${report.leaves} leaves, ${report.accounts} accounts; root ${toHex(report.head.rootHash)} signed at ${new Date(Number(report.head.timestampMs)).toISOString()}`,
  );
  if (report.problems.length === 0) {
    io.out("ok: the leaves make up the signed root, no version appears twice with different lists, no account skips a version");
    return 0;
  }
  for (const problem of report.problems) io.err(`problem: ${problem}`);
  throw new CliError(EXIT_FAILED, `the log failed the audit (${report.problems.length} problem${report.problems.length === 1 ? "" : "s"})`);
}
