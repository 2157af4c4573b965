#!/usr/bin/env -S npx --no-install tsx
/**
 * `sealpost`: a command-line client over the Messenger SDK. One store directory is one
 * device (--store, default $SEALPOST_HOME or ~/.sealpost); the server is --server
 * (default $SEALPOST_SERVER, else the one the store was set up with, else
 * http://127.0.0.1:8080). Commands: commands.ts (USAGE).
 *
 * One process uses a store at a time (store-owner.ts): a command started while another
 * sealpost uses the same store (e.g. `send` while `listen` runs) is run by that process.
 *
 * Never prints keys; message text only where the user asked for it (listen, history).
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { Messenger, type MessengerStores } from "../messenger/messenger.js";
import { createFileMessengerStores } from "../store/file-messenger-stores.js";
import { MessengerGroups } from "../groups/messenger-groups.js";
import { createFileGroupStores } from "../store/group-file-store.js";
import { describeGroupEvent } from "./group-commands.js";
import { auditCommand } from "./audit-command.js";
import { describe, parseCommandLine, runDeviceCommand, timeoutMs, USAGE, type CommandContext, type OpenDevice } from "./commands.js";
import { CliError, EXIT_FAILED, EXIT_QUEUED, EXIT_USAGE, within } from "./send-outcome.js";
import { controlSocketPath, delegate, own, type CommandIo, type DelegatedCommand } from "./store-owner.js";

const DEFAULT_SERVER = "http://127.0.0.1:8080";
/** Commands that may leave work in the outbox (group updates, receipts), given time to send it before exiting. */
const QUEUEING = new Set(["send", "send-file", "read", "group", "link", "revoke"]);
const stdio: CommandIo = { out: (l) => console.log(l), err: (l) => console.error(l) };

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  const [command, ...args] = positionals;
  if (values.help || !command) {
    stdio.out(USAGE);
    return 0;
  }
  const storeDir = resolve(values.store ?? process.env.SEALPOST_HOME ?? join(homedir(), ".sealpost"));
  const server = values.server ?? process.env.SEALPOST_SERVER;
  if (server !== undefined) checkServerUrl(server);
  const stores = createFileMessengerStores(storeDir);

  if (command === "init") {
    const [accountId] = args;
    if (!accountId) throw new CliError(EXIT_USAGE, "init needs an account id");
    const m = await Messenger.createAccount({ serverUrl: server ?? DEFAULT_SERVER, ...stores, accountId, deviceName: values.name ?? "device-1" });
    stdio.out(`created account ${accountId}; this device is ${accountId}/${m.address.deviceId}. Store: ${storeDir}`);
    await m.close();
    return 0;
  }
  if (command === "link" && !values.code) return linkNewDevice(args[0], values.name, server, stores);
  if (command === "audit") return auditCommand(storeDir, stores, server, DEFAULT_SERVER, values["log-key"], stdio);

  if (!existsSync(storeDir)) throw new CliError(EXIT_FAILED, `no account in ${storeDir}; run \`sealpost init <account>\` or \`sealpost link <account>\` first`);
  // A command on the store's device: hand it to the process using the store, or use it here.
  const cmd: DelegatedCommand = { argv, cwd: process.cwd(), stdin: wantsStdin(values.stdin, command, args) ? await readStdin() : undefined };
  const socket = controlSocketPath(storeDir);
  for (let attempt = 0; ; attempt++) {
    const code = await delegate(socket, cmd, stdio);
    if (code !== undefined) return code;
    const device = lazyDevice(stores, storeDir, server);
    const runHere = (c: DelegatedCommand, io: CommandIo) => runDeviceCommand(contextFor(c, io, device.get), c.argv).catch((e: unknown) => asExitCode(e, io));
    const ownership = await own(socket, runHere);
    if (!ownership) {
      if (attempt >= 20) throw new CliError(EXIT_FAILED, `the store ${storeDir} is busy (another sealpost is starting or stopping); try again`);
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    try {
      if (command === "listen") return await listen(await device.get());
      const code = await runHere(cmd, stdio);
      return device.ready && QUEUEING.has(command) ? await settle(device.ready, code, timeoutMs(values)) : code;
    } finally {
      await ownership.release();
      await device.close();
    }
  }
}

function contextFor(c: DelegatedCommand, io: CommandIo, device: () => Promise<OpenDevice>): CommandContext {
  return { io, cwd: c.cwd, stdin: async () => c.stdin ?? "", device };
}

/** The store's device, opened on first use (read-only commands never go online). */
function lazyDevice(stores: MessengerStores, storeDir: string, server: string | undefined) {
  let opening: Promise<OpenDevice> | undefined;
  let ready: OpenDevice | undefined;
  const get = () =>
    (opening ??= (async () => {
      const account = await stores.store.getAccount();
      if (!account) throw new CliError(EXIT_FAILED, `no account in ${storeDir}; run \`sealpost init <account>\` or \`sealpost link <account>\` first`);
      const m = await Messenger.open({ ...stores, serverUrl: server ?? account.serverUrl });
      // Groups ride on every opened device, so group content is handled whenever it is online.
      const groups = MessengerGroups.attach(m, createFileGroupStores(join(storeDir, "groups")));
      return (ready = { m, groups, online: () => m.start() });
    })());
  return {
    get,
    /** The device, if a command opened it. */
    get ready() {
      return ready;
    },
    close: async () => {
      const d = await opening?.catch(() => undefined);
      await d?.m.close();
    },
  };
}

/**
 * Before exiting: what this command queued (group updates, receipts, link changes) gets the
 * timeout to reach the server; what is still queued then is said, with exit code 75.
 */
async function settle(d: OpenDevice, code: number, ms: number): Promise<number> {
  if (code !== 0 || !d.m.isRunning) return code;
  const done = await within(Promise.all([d.m.flush(), d.groups.flush()]), ms);
  if (done) return code;
  stdio.err("sealpost: some updates are still queued (server unreachable?); they go out the next time sealpost runs online here");
  return EXIT_QUEUED;
}

async function listen(d: OpenDevice): Promise<number> {
  return new Promise<number>((resolveExit) => {
    d.m.on((e) => {
      const line = describe(e);
      if (line) stdio.out(line);
      if (e.type === "stopped" || (e.type === "device-revoked" && e.self)) resolveExit(EXIT_FAILED);
    });
    d.groups.on((e) => stdio.out(describeGroupEvent(e)));
    d.online();
    stdio.out(`listening as ${d.m.address.accountId}/${d.m.address.deviceId} (Ctrl-C to stop)`);
    process.once("SIGINT", () => resolveExit(0));
    process.once("SIGTERM", () => resolveExit(0));
  });
}

async function linkNewDevice(accountId: string | undefined, name: string | undefined, server: string | undefined, stores: MessengerStores): Promise<number> {
  if (!accountId) throw new CliError(EXIT_USAGE, "link needs an account id (or --code on an existing device)");
  const pending = await Messenger.startLink({ serverUrl: server ?? DEFAULT_SERVER, ...stores, accountId, deviceName: name ?? "new-device" });
  stdio.out("On a device of this account, run:\n");
  stdio.out(`  sealpost${server ? ` --server ${server}` : ""} link --code ${pending.code}\n`);
  stdio.out(
    `(add --store <its store directory> if that device's store is not the default). The code is valid for ${Math.round(pending.validForMs / 60_000)} minutes, once.`,
  );
  stdio.out("Waiting to be linked...");
  const m = await pending.complete({ timeoutMs: pending.validForMs });
  stdio.out(
    `linked: this device is ${accountId}/${m.address.deviceId}. If the other device sends history (link --code ... --history), \`sealpost listen\` here imports it.`,
  );
  await m.close();
  return 0;
}

function checkServerUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CliError(EXIT_USAGE, `invalid server URL ${JSON.stringify(url)} (expected e.g. http://127.0.0.1:8080)`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new CliError(EXIT_USAGE, `invalid server URL ${JSON.stringify(url)}: the scheme must be http or https`);
}

function wantsStdin(flag: boolean | undefined, command: string, args: string[]): boolean {
  return command === "send" && (flag === true || (args.length === 2 && args[1] === "-"));
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\n$/, "");
}

function asExitCode(e: unknown, io: CommandIo): number {
  if (e instanceof CliError) {
    io.err(`sealpost: ${e.message}`);
    return e.exitCode;
  }
  io.err(`sealpost: ${e instanceof Error ? e.message : String(e)}`);
  return EXIT_FAILED;
}

/** Exits once stdout and stderr are written out (a pipe takes longer than process.exit waits). */
function exit(code: number): void {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write("", done);
  process.stderr.write("", done);
}

main(process.argv.slice(2)).then(exit, (e: unknown) => exit(asExitCode(e, stdio)));
