/**
 * The sealpost commands over an open device. Each command prints through `io` and returns
 * its exit code (0 done, 1 failed, 2 usage, 75 queued for later), or throws CliError; the
 * same runner serves the process that owns the store and the commands handed to it by
 * others (store-owner.ts). Every outcome is said as it is: `sent` only after the server
 * stored the message, `queued` with the reason when it could not be sent yet.
 */
import { readFile, writeFile } from "node:fs/promises";
import { basename, resolve as resolvePath } from "node:path";
import { parseArgs } from "node:util";
import type { MessengerEvent } from "../core/events.js";
import type { Messenger } from "../messenger/messenger.js";
import { conversationGroupId, type StoredMessage } from "../store/conversation-store.js";
import type { MessengerGroups } from "../groups/messenger-groups.js";
import { GROUP_OPTION_SPECS, GROUP_USAGE, runGroupCommand } from "./group-commands.js";
import { CliError, EXIT_FAILED, EXIT_QUEUED, EXIT_USAGE, isUnknownAccount, OutcomeTracker, report, within } from "./send-outcome.js";
import type { CommandIo } from "./store-owner.js";

export const USAGE = `usage: sealpost [--store DIR] [--server URL] [--timeout SECONDS] <command> [args]
commands:
  init <account> [--name NAME]        create an account with this device as its first device
  link <account> [--name NAME]        on a new device: print a link code and wait to be linked
  link --code CODE [--history [--days N]]
                                      on an existing device: link the device showing CODE; with
                                      --history, also send it this account's messages (last N days)
  send <account> <text...>            send a text message (text "-" or --stdin: read it from stdin)
  send-file <account> <path> [--type MIME] [--caption TEXT]
  download <account> <message-id> [--out PATH]
                                      save a received (or sent) file; <message-id> may be a prefix
  listen                              print incoming messages, receipts and warnings (Ctrl-C to stop)
  history <account>                   show the conversation from the local store
  read <account>                      mark the conversation read (read receipts, read sync)
  safety-number <account>             show the safety number with <account>
  devices [account]                   list the verified devices of an account (default: yours)
  revoke <device>                     revoke a device of your account (<id> or <account>/<id>)
  status                              connection, outbox depth, sealed mail, key transparency,
                                      sends, retries, receive lag
  sealed-access [off|contacts|anyone|rotate]
                                      who may send this device sealed mail (the server is not
                                      told the sender); rotate: a new access key, so contacts
                                      holding the old one send unsealed until you write to them
                                      again; without an argument, show the setting
  audit [--log-key HEX]               check the server's whole key transparency log (no account
                                      needed; with a store, against the log key and head its
                                      device verified)
  group <command> [args]              groups (see below)
--timeout: how long a sending command waits for the server (default 30 s); a message not sent
by then stays queued (exit code 75). Exit codes: 0 done, 1 failed, 2 usage, 75 queued.
While one sealpost command uses a store (e.g. \`listen\`), other commands on it run inside
that process.
${GROUP_USAGE}`;

export const OPTION_SPECS = {
  ...GROUP_OPTION_SPECS,
  store: { type: "string" },
  server: { type: "string" },
  name: { type: "string" },
  code: { type: "string" },
  timeout: { type: "string" },
  "log-key": { type: "string" },
  history: { type: "boolean" },
  days: { type: "string" },
  stdin: { type: "boolean" },
  out: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export type CliOptions = ReturnType<typeof parseCommandLine>["values"];

export function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTION_SPECS, allowPositionals: true });
  } catch (e) {
    throw new CliError(EXIT_USAGE, `${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
  }
}

/** An open device: the Messenger of the store and its groups. */
export interface OpenDevice {
  m: Messenger;
  groups: MessengerGroups;
  /** Starts receiving and sending (idempotent). */
  online(): void;
}

export interface CommandContext {
  io: CommandIo;
  /** The directory relative paths are read from (the caller's, for a handed-over command). */
  cwd: string;
  /** The caller's stdin as text (send with "-" or --stdin). */
  stdin(): Promise<string>;
  device(): Promise<OpenDevice>;
}

const DEFAULT_TIMEOUT_S = 30;

/** --timeout in ms (default 30 s); a usage error for anything but a positive number of seconds. */
export function timeoutMs(values: CliOptions): number {
  if (values.timeout === undefined) return DEFAULT_TIMEOUT_S * 1000;
  const s = Number(values.timeout);
  if (!Number.isFinite(s) || s <= 0) throw new CliError(EXIT_USAGE, `--timeout takes a number of seconds, not ${JSON.stringify(values.timeout)}`);
  return s * 1000;
}

/** Runs one command that needs the store's device (everything but init and a new device's link). */
export async function runDeviceCommand(ctx: CommandContext, argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  const [command, ...args] = positionals;
  const { io } = ctx;
  const wait = timeoutMs(values);
  switch (command) {
    case "link": {
      if (!values.code) throw new CliError(EXIT_USAGE, "this store already holds a device; link --code CODE links another device to it");
      const { m } = await opened(ctx);
      const d = await m.linkDevice(values.code);
      io.out(`linked device ${d.accountId}/${d.deviceId}`);
      if (!values.history) return 0;
      // The user's consent: this account's history goes to the new device, end-to-end encrypted.
      let days: number | undefined;
      if (values.days !== undefined) {
        days = Number(values.days);
        if (!Number.isFinite(days) || days <= 0) throw new CliError(EXIT_USAGE, `--days takes a number of days, not ${JSON.stringify(values.days)}`);
      }
      const tracker = new OutcomeTracker(m, io.err);
      const off = m.on((e) => {
        if (e.type === "history-transfer" && e.role === "sender") io.err(`history: ${e.phase}${e.total ? ` (${e.done}/${e.total} messages)` : ""}`);
      });
      try {
        const sent = await m.transferHistory(d.deviceId, { sinceMs: days ? Date.now() - days * 86_400_000 : 0, waitMs: wait });
        const o = await tracker.wait(sent.messageId, wait);
        if (o.kind !== "sent") report(o, sent.messageId, "history", io.out);
        io.out(`history sent to ${d.accountId}/${d.deviceId}: ${sent.messages} messages (${sent.bytes} bytes, encrypted); it imports them when it is online`);
        return 0;
      } finally {
        off();
        tracker.close();
      }
    }
    case "send": {
      const [to, ...words] = args;
      const text = values.stdin || (words.length === 1 && words[0] === "-") ? await ctx.stdin() : words.join(" ");
      if (!to || (!text && words.length === 0 && !values.stdin))
        throw new CliError(EXIT_USAGE, "send needs an account and a text (or - to read it from stdin)");
      if (!text) throw new CliError(EXIT_USAGE, "send: the text is empty");
      const dev = await ctx.device();
      return sendAndReport(dev, wait, io, "message", async () => {
        await checkAccount(dev.m, to, wait);
        return dev.m.sendText(to, text);
      });
    }
    case "send-file": {
      const [to, path] = args;
      if (!to || !path) throw new CliError(EXIT_USAGE, "send-file needs an account and a path");
      const data = new Uint8Array(await readFile(resolvePath(ctx.cwd, path)));
      const dev = await ctx.device();
      return sendAndReport(dev, wait, io, "file", async () => {
        await checkAccount(dev.m, to, wait);
        io.err(`encrypting and uploading ${data.length} bytes...`);
        const upload = dev.m.sendFile(to, data, { contentType: values.type ?? "application/octet-stream", fileName: basename(path), caption: values.caption });
        const m = await within(upload, wait);
        if (!m) throw new CliError(EXIT_FAILED, `could not upload the file within ${wait / 1000} s (server unreachable?); nothing was sent`);
        return m.value;
      });
    }
    case "download": {
      const [peer, idPrefix] = args;
      if (!peer || !idPrefix) throw new CliError(EXIT_USAGE, "download needs an account and a message id");
      const { m } = await opened(ctx);
      const hits = (await m.history(peer)).filter((x) => x.id.startsWith(idPrefix.toLowerCase()));
      if (hits.length !== 1)
        throw new CliError(EXIT_FAILED, hits.length ? `message id ${idPrefix} is ambiguous (${hits.length} messages)` : `no message ${idPrefix} with ${peer}`);
      const msg = hits[0];
      if (msg.body.kind !== "attachment") throw new CliError(EXIT_FAILED, `message ${msg.id} is a text, not a file`);
      const info = msg.body.attachment;
      const target = resolvePath(ctx.cwd, values.out ?? (basename(info.fileName) || `${msg.id}.bin`));
      const got = await within(m.downloadAttachment(info), wait);
      if (!got) throw new CliError(EXIT_QUEUED, `could not download within ${wait / 1000} s (server unreachable?)`);
      const data = got.value;
      // Never overwrite: a file named by the sender must not replace one of the user's.
      await writeFile(target, data, { flag: "wx", mode: 0o600 }).catch((e: NodeJS.ErrnoException) => {
        throw new CliError(EXIT_FAILED, e.code === "EEXIST" ? `${target} exists; choose another path with --out` : `could not write ${target}: ${e.message}`);
      });
      io.out(`saved ${data.length} bytes to ${target}`);
      return 0;
    }
    case "history": {
      const [peer] = args;
      if (!peer) throw new CliError(EXIT_USAGE, "history needs an account");
      const { m } = await ctx.device();
      for (const msg of await m.history(peer)) io.out(show(msg));
      return 0;
    }
    case "read": {
      const [peer] = args;
      if (!peer) throw new CliError(EXIT_USAGE, "read needs an account");
      const dev = await opened(ctx);
      const n = await dev.m.markRead(peer);
      io.out(`${n} message(s) marked read`);
      if ((await within(dev.m.flush(), wait)) === undefined && n > 0) {
        throw new CliError(EXIT_QUEUED, "the read receipts are queued; they go out the next time sealpost runs online here");
      }
      return 0;
    }
    case "safety-number": {
      const [peer] = args;
      if (!peer) throw new CliError(EXIT_USAGE, "safety-number needs an account");
      const { m } = await ctx.device();
      io.out(`safety number with ${peer}:\n${await m.safetyNumber(peer)}`);
      return 0;
    }
    case "devices": {
      const { m } = await ctx.device();
      for (const d of await m.devices(args[0], { refresh: true })) {
        io.out(`${d.accountId}/${d.deviceId}  ${d.name}  added ${new Date(d.addedAtMs).toISOString()}${d.isThisDevice ? "  (this device)" : ""}`);
      }
      return 0;
    }
    case "revoke": {
      const { m } = await ctx.device();
      const id = deviceIdOf(args[0], m.accountId);
      await m.revokeDevice(id);
      io.out(`revoked device ${m.accountId}/${id}`);
      return 0;
    }
    case "group": {
      const dev = await opened(ctx);
      await dev.m.drained(); // apply group changes waiting in the mailbox first
      const sub = args[0];
      // Members must exist: a group with an account nobody has is a mistake, not a group.
      if (sub === "create" || sub === "add") {
        for (const account of args.slice(2)) await checkAccount(dev.m, account, wait);
        for (const account of values.admin ?? []) await checkAccount(dev.m, account, wait);
      }
      const lines: string[] = [];
      const code = await runGroupCommand(
        args,
        { groups: dev.groups, out: (l) => lines.push(l), flushWithin: async (p) => (await within(p, wait)) !== undefined },
        values,
      );
      for (const l of lines) (code === 0 ? io.out : io.err)(l);
      return code;
    }
    case "status": {
      const dev = await ctx.device();
      if (!dev.m.isRunning) {
        // Standalone: go online long enough to say whether the server answers.
        const reached = new Promise<void>((resolve) => {
          const off = dev.m.on((e) => {
            if (e.type === "connection" && e.state !== "connecting") off(), resolve();
            if (e.type === "stopped" || (e.type === "device-revoked" && e.self)) off(), resolve();
          });
        });
        dev.online();
        await within(reached, Math.min(wait, 10_000));
      }
      const s = await dev.m.stats();
      io.out(`device ${dev.m.address.accountId}/${dev.m.address.deviceId}`);
      io.out(`connection: ${s.connection}${s.lastError ? ` (${s.lastError})` : ""}`);
      io.out(`outbox: ${s.outboxDepth} waiting`);
      io.out(sealedAccessLine(dev.m));
      const kt = s.transparency;
      io.out(
        kt
          ? `key transparency: log key ${kt.logKey.slice(0, 16)}..., head of ${kt.treeSize} leaves verified (signed ${new Date(kt.signedAtMs).toISOString()})${kt.monitoredSize !== undefined ? `, own account watched through ${kt.monitoredSize} leaves` : ""}`
          : "key transparency: no device list verified yet",
      );
      io.out(
        `since this process started: ${s.sent} sent, ${s.sendRetries} retried, ${s.failed} failed, ${s.received} received${s.receiveLagMs !== undefined ? `; last receive lag ${s.receiveLagMs} ms` : ""}`,
      );
      return 0;
    }
    case "sealed-access": {
      const { m } = await ctx.device();
      const mode = args[0];
      if (mode === "rotate") await m.rotateAccessKey();
      else if (mode !== undefined) {
        if (mode !== "off" && mode !== "contacts" && mode !== "anyone")
          throw new CliError(EXIT_USAGE, `sealed-access takes off, contacts, anyone or rotate, not ${JSON.stringify(mode)}`);
        await m.setSealedAccess(mode);
      }
      io.out(sealedAccessLine(m));
      return 0;
    }
    case "listen":
      throw new CliError(EXIT_FAILED, "this store is already in use by a running sealpost (listen runs only once per store)");
    case "init":
      throw new CliError(EXIT_FAILED, "this store already holds an account");
    default:
      throw new CliError(EXIT_USAGE, `unknown command ${JSON.stringify(command)}\n${USAGE}`);
  }
}

async function opened(ctx: CommandContext): Promise<OpenDevice> {
  const dev = await ctx.device();
  dev.online();
  return dev;
}

/** Fails at once for an account that does not exist; unreachable servers are not an answer (the message queues). */
async function checkAccount(m: Messenger, account: string, wait: number): Promise<void> {
  try {
    await within(m.devices(account, { refresh: true }), wait);
  } catch (e) {
    if (isUnknownAccount(e)) throw new CliError(EXIT_FAILED, `no account ${JSON.stringify(account)} on this server; nothing was sent`);
    // Unreachable or refused for another reason: the send reports what happens.
  }
}

/** Goes online and queues one message with `queue`, watching from before either (a revocation found at once is not missed). */
async function sendAndReport(dev: OpenDevice, wait: number, io: CommandIo, what: string, queue: () => Promise<StoredMessage>): Promise<number> {
  const tracker = new OutcomeTracker(dev.m, io.err);
  dev.online();
  try {
    const msg = await queue();
    report(await tracker.wait(msg.id, wait), msg.id, what, io.out);
    return 0;
  } finally {
    tracker.close();
  }
}

/** `2` or `alice/2` (this account only). */
function deviceIdOf(arg: string | undefined, account: string): number {
  const m = /^(?:(.+)\/)?(\d+)$/.exec(arg ?? "");
  if (!m) throw new CliError(EXIT_USAGE, "revoke needs a device: <id> or <account>/<id> (see `sealpost devices`)");
  if (m[1] !== undefined && m[1] !== account)
    throw new CliError(EXIT_FAILED, `${arg} is not a device of your account ${account}; you can revoke only your own devices`);
  const id = Number(m[2]);
  if (!Number.isSafeInteger(id) || id < 1) throw new CliError(EXIT_USAGE, `no device id in ${JSON.stringify(arg)}`);
  return id;
}

export function show(m: StoredMessage): string {
  const who = m.outgoing ? "me" : `${m.sender.accountId}/${m.sender.deviceId}`;
  const a = m.body.kind === "attachment" ? m.body.attachment : undefined;
  const body = a
    ? `[file ${a.fileName || "(unnamed)"}, ${a.contentType}, ${a.size} bytes; \`sealpost download\` ${m.id.slice(0, 8)}]${a.caption ? ` ${a.caption}` : ""}`
    : m.body.kind === "text"
      ? m.body.text
      : "";
  const state = m.outgoing ? ` (${m.status}${m.failure ? `: ${m.failure}` : ""})` : m.read ? "" : " (unread)";
  const group = conversationGroupId(m.conversation);
  const where = group ? `[group ${group.slice(0, 8)}] ` : "";
  return `${new Date(m.sentAtMs).toISOString()} ${where}${who}: ${body}${state}`;
}

/** The device's sealed-mail setting, as `status` and `sealed-access` say it. */
function sealedAccessLine(m: Messenger): string {
  const a = m.sealedAccess();
  return `sealed mail to this device: ${a.mode}${a.registered ? "" : " (not confirmed by the server yet)"}`;
}

export function describe(e: MessengerEvent): string | undefined {
  switch (e.type) {
    case "message":
      return show(e.message);
    case "receipt":
      return `${e.receipt} by ${e.from.accountId}/${e.from.deviceId}: ${e.messageIds.length} message(s)`;
    case "typing":
      return `${e.from.accountId} ${e.started ? "is typing..." : "stopped typing"}`;
    case "read-sync":
      return `read on your device ${e.from.deviceId}: ${e.messages.length} message(s)`;
    case "key-change":
      return `WARNING: ${e.accountId}'s devices changed (${e.changes.map((c) => `${c.kind} ${c.deviceId}`).join(", ")}). Compare safety numbers again.`;
    case "directory-untrusted":
      return `WARNING: ${e.accountId}'s device list could not be verified (${e.problem}): ${e.detail}`;
    case "device-linked":
      return `device ${e.device.deviceId} (${e.name}) was linked to your account`;
    case "device-revoked":
      return e.self ? "this device was revoked" : `device ${e.device.deviceId} was revoked from your account`;
    case "send-failed":
      return `could not send ${e.label} ${e.messageId}: ${e.reason}`;
    case "sealed-fallback":
      return `(note) ${e.label} ${e.messageId} to ${e.accountId} goes unsealed (the server is told the sender): ${e.reason}`;
    case "session-problem":
      return `${e.problem === "undecryptable" ? "WARNING" : "(note)"} from ${e.from.accountId}/${e.from.deviceId}: ${e.problem} (${e.detail})`;
    case "receive-problem":
      return `WARNING: dropped mail${e.sequence !== undefined ? ` #${e.sequence}` : ""}${e.from ? ` from ${e.from.accountId}/${e.from.deviceId}` : ""}: ${e.problem} (${e.detail})`;
    case "connection":
      return e.state === "online" ? "(online)" : e.state === "offline" && e.error ? `(offline: ${e.error}; retrying)` : undefined;
    case "stopped":
      return `stopped: ${e.detail}`;
    case "history-transfer":
      return e.role === "receiver" ? `history: ${e.phase}${e.total ? ` ${e.done}/${e.total} messages` : ""}${e.detail ? ` (${e.detail})` : ""}` : undefined;
    default:
      return undefined;
  }
}
