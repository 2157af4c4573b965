#!/usr/bin/env -S npx --no-install tsx
/**
 * `sealpost`: a command-line client over the Messenger SDK. One store directory is one
 * device (--store, default $SEALPOST_HOME or ~/.sealpost); the server is --server
 * (default $SEALPOST_SERVER or http://127.0.0.1:8080).
 *
 *   sealpost init alice --name phone          create an account with this device
 *   sealpost link alice --name laptop         (new device) print a link code, wait until linked
 *   sealpost link --code <code>               (existing device) link the device showing <code>
 *   sealpost send bob "hello"                 queue and send a text
 *   sealpost send-file bob ./photo.jpg        encrypt, upload and send a file
 *   sealpost listen                           print incoming events until Ctrl-C
 *   sealpost history bob                      the conversation from the local store
 *   sealpost read bob                         mark bob's messages read (sends read receipts)
 *   sealpost safety-number bob                the 60-digit number to compare with bob
 *   sealpost devices [account]                the verified device list
 *   sealpost revoke <device-id>               remove a device from this account
 *   sealpost group create trip bob carol      groups (cli/group-commands.ts: create, add, remove,
 *                                             promote, demote, settings, leave, send, list, ...)
 *
 * Never prints keys; message text only where the user asked for it (listen, history).
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import type { MessengerEvent } from "../events.js";
import { Messenger, createFileMessengerStores, type MessengerStores } from "../messenger.js";
import type { StoredMessage } from "../conversation-store.js";
import { MessengerGroups } from "../groups/messenger-groups.js";
import { createFileGroupStores } from "../store/group-file-store.js";
import { GROUP_OPTION_SPECS, GROUP_USAGE, describeGroupEvent, runGroupCommand } from "./group-commands.js";

const USAGE = `usage: sealpost [--store DIR] [--server URL] <command> [args]
commands:
  init <account> [--name NAME]        create an account with this device as its first device
  link <account> [--name NAME]        on a new device: print a link code and wait to be linked
  link --code CODE                    on an existing device: link the device showing CODE
  send <account> <text...>            send a text message
  send-file <account> <path> [--type MIME] [--caption TEXT]
  listen                              print incoming messages, receipts and warnings (Ctrl-C to stop)
  history <account>                   show the conversation from the local store
  read <account>                      mark the conversation read (read receipts, read sync)
  safety-number <account>             show the safety number with <account>
  devices [account]                   list the verified devices of an account (default: yours)
  revoke <device-id>                  revoke a device of your account
  group <command> [args]              groups (see below)
${GROUP_USAGE}`;

function fail(message: string): never {
  console.error(`sealpost: ${message}`);
  process.exit(1);
}

function show(m: StoredMessage): string {
  const who = m.outgoing ? "me" : `${m.sender.accountId}/${m.sender.deviceId}`;
  const body = m.body.kind === "text" ? m.body.text : `[file ${m.body.attachment.fileName || "(unnamed)"}, ${m.body.attachment.contentType}, ${m.body.attachment.size} bytes]`;
  const state = m.outgoing ? ` (${m.status})` : m.read ? "" : " (unread)";
  return `${new Date(m.sentAtMs).toISOString()} ${who}: ${body}${state}`;
}

function describe(e: MessengerEvent): string | undefined {
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
      return `WARNING: ${e.accountId}'s device list failed verification (${e.problem}); not sending to it.`;
    case "device-linked":
      return `device ${e.device.deviceId} (${e.name}) was linked to your account`;
    case "device-revoked":
      return e.self ? "this device was revoked" : `device ${e.device.deviceId} was revoked from your account`;
    case "send-failed":
      return `could not send ${e.label} ${e.messageId}: ${e.reason}`;
    case "connection":
      return e.state === "online" ? "(online)" : e.state === "offline" && e.error ? `(offline: ${e.error}; retrying)` : undefined;
    default:
      return undefined;
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    options: {
      ...GROUP_OPTION_SPECS,
      store: { type: "string" },
      server: { type: "string" },
      name: { type: "string" },
      code: { type: "string" },
      type: { type: "string" },
      caption: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
  });
  const [command, ...args] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return;
  }
  const storeDir = values.store ?? process.env.SEALPOST_HOME ?? join(homedir(), ".sealpost");
  const serverUrl = values.server ?? process.env.SEALPOST_SERVER ?? "http://127.0.0.1:8080";
  const stores: MessengerStores = createFileMessengerStores(storeDir);
  const base = { serverUrl, ...stores };
  let groups: MessengerGroups | undefined;
  const open = async () => {
    const account = await stores.store.getAccount();
    if (!account) fail(`no account in ${storeDir}; run \`sealpost init <account>\` or \`sealpost link <account>\` first`);
    const m = await Messenger.open({ ...base, serverUrl: values.server ?? process.env.SEALPOST_SERVER ?? account.serverUrl });
    // Groups ride on every opened device, so group content is handled whenever it is online.
    groups = MessengerGroups.attach(m, createFileGroupStores(join(storeDir, "groups")));
    return m;
  };
  /** Runs with the Messenger online until its outbox is empty. */
  const online = async (fn: (m: Messenger) => Promise<void>) => {
    const m = await open();
    m.start();
    try {
      await fn(m);
      await m.flush();
    } finally {
      await m.close();
    }
  };

  switch (command) {
    case "init": {
      const [accountId] = args;
      if (!accountId) fail("init needs an account id");
      const m = await Messenger.createAccount({ ...base, accountId, deviceName: values.name ?? "device-1" });
      console.log(`created account ${accountId}; this device is ${accountId}/${m.address.deviceId}. Store: ${storeDir}`);
      break;
    }
    case "link": {
      if (values.code) {
        await online(async (m) => {
          const d = await m.linkDevice(values.code!);
          console.log(`linked device ${d.accountId}/${d.deviceId}`);
        });
        break;
      }
      const [accountId] = args;
      if (!accountId) fail("link needs an account id (or --code on an existing device)");
      const pending = await Messenger.startLink({ ...base, accountId, deviceName: values.name ?? "new-device" });
      console.log("On a device of this account, run:\n");
      console.log(`  sealpost link --code ${pending.code}\n`);
      console.log("Waiting to be linked...");
      const m = await pending.complete({ timeoutMs: 10 * 60_000 });
      console.log(`linked: this device is ${accountId}/${m.address.deviceId}`);
      break;
    }
    case "send": {
      const [to, ...words] = args;
      if (!to || words.length === 0) fail("send needs an account and a text");
      await online(async (m) => {
        const sent = await m.sendText(to, words.join(" "));
        console.log(`queued ${sent.id}`);
      });
      console.log("sent");
      break;
    }
    case "send-file": {
      const [to, path] = args;
      if (!to || !path) fail("send-file needs an account and a path");
      const data = new Uint8Array(await readFile(path));
      await online(async (m) => {
        const sent = await m.sendFile(to, data, { contentType: values.type ?? "application/octet-stream", fileName: basename(path), caption: values.caption });
        console.log(`queued ${sent.id} (${data.length} bytes, encrypted and uploaded)`);
      });
      break;
    }
    case "listen": {
      const m = await open();
      m.on((e) => {
        const line = describe(e);
        if (line) console.log(line);
      });
      groups?.on((e) => console.log(describeGroupEvent(e)));
      m.start();
      console.log(`listening as ${m.address.accountId}/${m.address.deviceId} (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
      await m.close();
      break;
    }
    case "history": {
      const [peer] = args;
      if (!peer) fail("history needs an account");
      const m = await open();
      for (const msg of await m.history(peer)) console.log(show(msg));
      break;
    }
    case "read": {
      const [peer] = args;
      if (!peer) fail("read needs an account");
      await online(async (m) => console.log(`${await m.markRead(peer)} message(s) marked read`));
      break;
    }
    case "safety-number": {
      const [peer] = args;
      if (!peer) fail("safety-number needs an account");
      const m = await open();
      console.log(`safety number with ${peer}:\n${await m.safetyNumber(peer)}`);
      break;
    }
    case "devices": {
      const m = await open();
      for (const d of await m.devices(args[0], { refresh: true })) {
        console.log(`${d.accountId}/${d.deviceId}  ${d.name}  added ${new Date(d.addedAtMs).toISOString()}${d.isThisDevice ? "  (this device)" : ""}`);
      }
      break;
    }
    case "revoke": {
      const id = Number(args[0]);
      if (!Number.isInteger(id) || id < 1) fail("revoke needs a device id");
      const m = await open();
      await m.revokeDevice(id);
      console.log(`revoked device ${id}`);
      break;
    }
    case "group": {
      let code = 0;
      await online(async (m) => {
        await m.drained(); // apply group changes waiting in the mailbox first
        code = await runGroupCommand(args, { groups: groups!, out: (l) => console.log(l) }, values);
      });
      if (code !== 0) process.exit(code);
      break;
    }
    default:
      fail(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => fail(err instanceof Error ? err.message : String(err)),
);
