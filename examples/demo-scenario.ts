/**
 * The demo scenario against a running server: Alice (one device) writes to Bob (phone and
 * laptop; the laptop offline at first), with delivery and read receipts, read sync, typing,
 * and the laptop catching up. Prints each step: what the server saw (sizes of ciphertext
 * only, taken from the requests on the wire) and what each device decrypted.
 * Used by `npm run demo` (examples/demo.ts, which stands up a server) and by the integration tests.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { SendRequest } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { Messenger, createMemoryMessengerStores, defaultTransport, type MessengerEvent, type StoredMessage, type TransportFactory } from "@sealpost/client";

export interface DemoResult {
  alice: string;
  bob: string;
  /** What each device showed, by label. */
  decrypted: Record<string, string[]>;
  /** Every Send the server received: sizes only. */
  serverSaw: { from: string; bodyBytes: number; entryBytes: number[]; ephemeral: boolean }[];
  /** Final statuses of Alice's messages. */
  aliceStatuses: string[];
}

export interface DemoOptions {
  serverUrl: string;
  print?: (line: string) => void;
  /** Account id suffix (tests run the demo several times on one NATS). */
  suffix?: string;
}

function describeEvent(e: MessengerEvent): string | undefined {
  switch (e.type) {
    case "message":
      return `decrypted ${e.message.outgoing ? "own sent copy" : "message"} from ${e.message.sender.accountId}/${e.message.sender.deviceId}: ${show(e.message)}`;
    case "receipt":
      return `${e.receipt} receipt from ${e.from.accountId}/${e.from.deviceId} for ${e.messageIds.length} message(s)`;
    case "typing":
      return `${e.from.accountId}/${e.from.deviceId} ${e.started ? "is typing" : "stopped typing"}`;
    case "read-sync":
      return `read sync from own device ${e.from.deviceId}: ${e.messages.length} message(s) marked read`;
    case "key-change":
      return `WARNING: ${e.accountId}'s devices changed (${e.changes.map((c) => `${c.kind} ${c.deviceId}`).join(", ")}); re-check the safety number`;
    case "device-linked":
      return `device linked to this account: ${e.device.deviceId} (${e.name})`;
    default:
      return undefined;
  }
}

function show(m: StoredMessage): string {
  return m.body.kind === "text" ? JSON.stringify(m.body.text) : `[${m.body.attachment.contentType}, ${m.body.attachment.size} bytes]`;
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const suffix = opts.suffix ?? "";
  const aliceId = `alice${suffix}`;
  const bobId = `bob${suffix}`;
  const serverSaw: DemoResult["serverSaw"] = [];
  const decrypted: Record<string, string[]> = {};

  // A transport that reports what goes over the wire to the server: sizes, never content.
  const spying =
    (who: string): TransportFactory =>
    (baseUrl, interceptors) => {
      const spy: Interceptor = (next) => async (req) => {
        if (!req.stream && req.method.name === "Send") {
          const s = req.message as SendRequest;
          const rec = { from: who, bodyBytes: s.sharedBody.length, entryBytes: s.entries.map((e) => e.entry.length), ephemeral: s.ephemeral };
          serverSaw.push(rec);
          print(
            `  [server] Send from ${who}${s.ephemeral ? " (ephemeral)" : ""}: shared body ${rec.bodyBytes} B ciphertext, ` +
              `entries ${s.entries.map((e, i) => `${e.device?.accountId}/${e.device?.deviceId}=${rec.entryBytes[i]} B`).join(", ")}`,
          );
        }
        return next(req);
      };
      return defaultTransport(baseUrl, [...interceptors, spy]);
    };

  const watch = (label: string, m: Messenger) => {
    decrypted[label] = [];
    record(m);
    m.on((e) => {
      const d = describeEvent(e);
      if (!d) return;
      decrypted[label].push(d);
      print(`  [${label}] ${d}`);
    });
  };
  // Every event of every device is recorded, so a wait also finds events that came first.
  const logs = new Map<Messenger, MessengerEvent[]>();
  const record = (m: Messenger) => {
    const log: MessengerEvent[] = [];
    logs.set(m, log);
    m.on((e) => log.push(e));
  };
  const waitFor = (m: Messenger, pred: (e: MessengerEvent) => boolean, what: string, timeoutMs = 20_000) =>
    new Promise<MessengerEvent>((resolve, reject) => {
      const found = logs.get(m)?.find(pred);
      if (found) return resolve(found);
      const t = setTimeout(() => {
        off();
        reject(new Error(`demo: timed out waiting for ${what}`));
      }, timeoutMs);
      const off = m.on((e) => {
        if (pred(e)) {
          clearTimeout(t);
          off();
          resolve(e);
        }
      });
    });
  const base = { serverUrl: opts.serverUrl, backoff: { baseMs: 50, maxMs: 500 } };

  print("1. Alice creates her account (one device); Bob creates his on his phone.");
  const alice = await Messenger.createAccount({
    ...base,
    ...createMemoryMessengerStores(),
    accountId: aliceId,
    deviceName: "alice-phone",
    transport: spying(`${aliceId}/1`),
  });
  const bobPhone = await Messenger.createAccount({
    ...base,
    ...createMemoryMessengerStores(),
    accountId: bobId,
    deviceName: "bob-phone",
    transport: spying(`${bobId}/1`),
  });
  watch("alice", alice);
  watch("bob-phone", bobPhone);

  print("2. Bob links his laptop: the laptop shows a code, the phone signs it into Bob's device list.");
  const pending = await Messenger.startLink({
    ...base,
    ...createMemoryMessengerStores(),
    accountId: bobId,
    deviceName: "bob-laptop",
    transport: spying(`${bobId}/laptop`),
  });
  print(`  link code (public keys only): ${pending.code.slice(0, 32)}...`);
  const laptopAddr = await bobPhone.linkDevice(pending.code);
  const bobLaptop = await pending.complete({ pollMs: 50 });
  watch("bob-laptop", bobLaptop);
  print(`  laptop is ${laptopAddr.accountId}/${laptopAddr.deviceId}; it stays offline for now.`);
  print(`  safety number Alice<->Bob: ${await alice.safetyNumber(bobId)}`);

  alice.start();
  bobPhone.start();

  print("3. Alice sends two messages to Bob (his laptop is offline).");
  const m1 = await alice.sendText(bobId, "Hi Bob! Lunch at noon?");
  const m2 = await alice.sendText(bobId, "I'll book the usual place.");
  await waitFor(bobPhone, (e) => e.type === "message" && e.message.id === m2.id, "Bob's phone to get both messages");
  await waitFor(alice, (e) => e.type === "receipt" && e.receipt === "delivered" && e.messageIds.includes(m2.id), "a delivery receipt");

  print("4. Bob types on his phone, then reads the messages there (read receipt to Alice, read sync to his laptop).");
  await waitFor(alice, (e) => e.type === "receipt" && e.messageIds.includes(m1.id), "the first receipt");
  await bobPhone.setTyping(aliceId, true);
  await waitFor(alice, (e) => e.type === "typing", "the typing indicator");
  await bobPhone.markRead(aliceId);
  await waitFor(alice, (e) => e.type === "receipt" && e.receipt === "read" && e.messageIds.includes(m2.id), "a read receipt");
  const reply = await bobPhone.sendText(aliceId, "Noon works. See you there!");
  await waitFor(alice, (e) => e.type === "message" && e.message.id === reply.id, "Bob's reply");
  await bobPhone.flush();

  print("5. Bob's laptop comes online and catches up from its mailbox.");
  bobLaptop.start();
  await bobLaptop.drained();
  await waitFor(bobLaptop, (e) => e.type === "message" && e.message.id === reply.id, "the laptop to catch up");
  const laptopHistory = await bobLaptop.history(aliceId);
  print(
    `  laptop history: ${laptopHistory.map((m) => `${m.outgoing ? "me" : "alice"}: ${show(m)}${!m.outgoing ? (m.read ? " (read)" : " (unread)") : ""}`).join(" | ")}`,
  );
  await alice.flush();
  await bobLaptop.flush();
  await waitFor(alice, (e) => e.type === "receipt" && e.from.deviceId === laptopAddr.deviceId && e.messageIds.includes(m2.id), "the laptop's delivery receipt");

  const aliceHistory = await alice.history(bobId);
  print(`6. Alice's view: ${aliceHistory.map((m) => `${show(m)} [${m.outgoing ? m.status : "received"}]`).join(" | ")}`);
  const total = serverSaw.reduce((n, s) => n + s.bodyBytes + s.entryBytes.reduce((a, b) => a + b, 0), 0);
  print(`   The server relayed ${serverSaw.length} Sends (${total} bytes of ciphertext) and never saw a key or a plaintext.`);
  await Promise.all([alice.close(), bobPhone.close(), bobLaptop.close()]);
  return { alice: aliceId, bob: bobId, decrypted, serverSaw, aliceStatuses: aliceHistory.filter((m) => m.outgoing).map((m) => m.status) };
}
