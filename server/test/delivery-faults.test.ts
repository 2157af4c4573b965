/**
 * Faults: nats-server restarted mid-traffic (same store), and a server instance killed
 * (SIGKILL, a real child process) mid-stream. A sender retries every Send with the same
 * message_id until it is Stored; a receiver acks everything it gets and reconnects, to any
 * instance, whenever its stream breaks. Afterwards: every Stored message arrived, in send
 * order, and nothing arrived again after its ack had succeeded.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startTestNats, startTestServer, createTestAccount, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { hex } from "../src/delivery/validation.js";
import { bytes, deliveryOf, entriesFor, newMessageId, storedOf, waitUntil, type DeliveryClient } from "./delivery-helpers.js";

const TOKEN_SECRET = "test-secret-test-secret-test-secret!";
const root = fileURLToPath(new URL("../..", import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let nats: TestNats;
let a: RunningServer;
let b: RunningServer;

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  a = await startTestServer(nats.url, { tokenSecret: TOKEN_SECRET });
  b = await startTestServer(nats.url, { tokenSecret: TOKEN_SECRET });
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await nats?.stop();
});

/** Sends one message until some instance answers Stored (same message_id every time); true if it took a retry. */
async function sendReliably(clients: DeliveryClient[], req: Parameters<DeliveryClient["send"]>[0], start: number): Promise<boolean> {
  for (let attempt = start; ; attempt++) {
    try {
      storedOf(await clients[attempt % clients.length].send(req, { timeoutMs: 4000 }));
      return attempt > start;
    } catch {
      await sleep(100);
    }
  }
}

/** Acks everything it receives; reconnects on any break, rotating over the instances. */
class ReliableReceiver {
  readonly firstSeen: string[] = [];
  /** A sequence delivered again after its Ack succeeded: never allowed. */
  readonly ackedSequenceAgain: string[] = [];
  /** Another copy (new sequence) of a message id after an Ack of an earlier copy. */
  readonly copiesAfterAck: { id: string; seq: bigint }[] = [];
  private readonly seen = new Set<string>();
  private readonly acked = new Set<string>();
  private readonly ackedSeqs = new Set<bigint>();
  private readonly abort = new AbortController();
  private readonly loop: Promise<void>;
  reconnects = 0;

  constructor(private readonly clients: DeliveryClient[]) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    for (let i = 0; !this.abort.signal.aborted; i++) {
      const client = this.clients[i % this.clients.length];
      try {
        for await (const ev of client.receive({ maxInFlight: 8 }, { signal: this.abort.signal })) {
          if (ev.event.case !== "message") continue;
          const m = ev.event.value;
          const id = hex(m.messageId);
          if (this.ackedSeqs.has(m.sequence)) this.ackedSequenceAgain.push(`${id} (seq ${m.sequence})`);
          else if (this.acked.has(id)) this.copiesAfterAck.push({ id, seq: m.sequence });
          if (!this.seen.has(id)) {
            this.seen.add(id);
            this.firstSeen.push(id);
          }
          await this.ack(m.sequence, id, i);
        }
      } catch {
        // Stream broke (instance gone, NATS restarting): reconnect below.
      }
      if (this.abort.signal.aborted) return;
      this.reconnects++;
      await sleep(100);
    }
  }

  private async ack(seq: bigint, id: string, start: number): Promise<void> {
    for (let attempt = start; !this.abort.signal.aborted; attempt++) {
      try {
        await this.clients[attempt % this.clients.length].ack({ sequences: [seq] }, { timeoutMs: 4000 });
        this.acked.add(id);
        this.ackedSeqs.add(seq);
        return;
      } catch {
        await sleep(100);
      }
    }
  }

  has(id: string): boolean {
    return this.seen.has(id);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }
}

async function traffic(bob: TestAccount, senders: DeliveryClient[], count: number, fault: () => Promise<void>, faultAt: number) {
  const sentIds: string[] = [];
  const retried = new Set<string>();
  let faulted: Promise<void> | undefined;
  for (let i = 0; i < count; i++) {
    if (i === faultAt) faulted = fault();
    const messageId = newMessageId();
    if (await sendReliably(senders, { messageId, sharedBody: bytes(`m${i}`), entries: entriesFor(bob.devices) }, i)) retried.add(hex(messageId));
    sentIds.push(hex(messageId));
  }
  await faulted;
  return { sentIds, retried };
}

/**
 * The guarantees after a fault: every Stored message arrived, in send order; no acked
 * sequence came again. A second copy of an acked message can only come from the one window
 * JetStream leaves open (docs/ARCHITECTURE.md, Delivery, "Residual duplicate"): the entry
 * was stored but its PubAck lost, the copy was acked, and nats-server restarted before the
 * retry, forgetting the deleted message's Msg-Id. So any copy must belong to a retried Send.
 */
function expectDelivered(receiver: ReliableReceiver, sent: { sentIds: string[]; retried: Set<string> }): void {
  expect(receiver.ackedSequenceAgain).toEqual([]);
  expect(receiver.copiesAfterAck.filter((c) => !sent.retried.has(c.id))).toEqual([]);
  expect(receiver.firstSeen).toEqual(sent.sentIds);
}

describe("faults", () => {
  it("nats-server restarts mid-traffic: every Stored message arrives once after ack, in order", async () => {
    const [alice, bob] = await Promise.all([
      createTestAccount(a.url, "fault-alice", { oneTimePrekeys: 1 }),
      createTestAccount(a.url, "fault-bob", { oneTimePrekeys: 1 }),
    ]);
    const receiver = new ReliableReceiver([deliveryOf(bob.devices[0], b.url), deliveryOf(bob.devices[0], a.url)]);
    const senders = [deliveryOf(alice.devices[0], a.url), deliveryOf(alice.devices[0], b.url)];
    const sent = await traffic(bob, senders, 40, () => nats.restart!(), 15);
    await waitUntil("every stored message to arrive", () => sent.sentIds.every((id) => receiver.has(id)), 40_000);
    await receiver.stop();
    expectDelivered(receiver, sent);
  });

  it("a server instance is killed mid-stream: the device reconnects elsewhere and gets everything it had not acked", async () => {
    const [alice, bob] = await Promise.all([
      createTestAccount(a.url, "kill-alice", { oneTimePrekeys: 1 }),
      createTestAccount(a.url, "kill-bob", { oneTimePrekeys: 1 }),
    ]);
    const victim = await spawnServer(nats.url);
    try {
      // The receiver starts on the victim; sends alternate between the victim and b.
      const receiver = new ReliableReceiver([deliveryOf(bob.devices[0], victim.url), deliveryOf(bob.devices[0], b.url)]);
      const senders = [deliveryOf(alice.devices[0], victim.url), deliveryOf(alice.devices[0], b.url)];
      const sent = await traffic(bob, senders, 40, async () => victim.kill(), 15);
      await waitUntil("every stored message to arrive", () => sent.sentIds.every((id) => receiver.has(id)), 40_000);
      await receiver.stop();
      // NATS kept running here, so its dedupe remembers every Msg-Id: no copies at all.
      expect(receiver.copiesAfterAck).toEqual([]);
      expectDelivered(receiver, sent);
      expect(receiver.reconnects).toBeGreaterThan(0);
    } finally {
      victim.kill();
    }
  });
});

/** A server instance in its own process, so it can be killed for real (SIGKILL: no drain, sockets reset). */
async function spawnServer(natsUrl: string): Promise<{ url: string; kill(): void }> {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "server/src/main.ts"], {
    cwd: root,
    env: { ...process.env, NATS_URL: natsUrl, SEALPOST_PORT: "0", SEALPOST_TOKEN_SECRET: TOKEN_SECRET, SEALPOST_LOG_LEVEL: "info" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = "";
    child.once("exit", (code) => reject(new Error(`server process exited (${code}) before listening: ${buf.slice(-500)}`)));
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => {
      buf += d;
      const m = /"msg":"listening","url":"(http:\/\/[^"]+)"/.exec(buf);
      if (m) resolve(m[1]);
    });
  });
  return {
    url,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
