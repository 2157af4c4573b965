/**
 * The receive loop, against fakes for the server and the store (the loop is the real one).
 *
 * Acks: a burst of messages is acknowledged by one Ack (ACK_DELAY_MS after its first
 * message), and a stop inside the delay loses no ack: it goes out at once or is kept in the
 * saved state for the next start.
 *
 * Cursor (the after_sequence it resumes with): it never passes mail the loop has not
 * received. Live mail (after Drained) can come out of sequence order when it was stored at
 * the same time through two server instances; had the cursor followed it, a stream that
 * broke between the two would resume above the late one and skip it.
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { MailboxMessageSchema } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { DrainedSchema, type ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { ACK_DELAY_MS, ReceiveLoop, type ReceiveLoopDeps } from "../src/delivery/receive-loop.js";
import type { ReceiveState } from "../src/store/conversation-store.js";

const message = (seq: number): ReceiveResponse =>
  ({ event: { case: "message", value: create(MailboxMessageSchema, { sequence: BigInt(seq), messageId: new Uint8Array(16) }) } }) as ReceiveResponse;
const drained = (last: number): ReceiveResponse =>
  ({ event: { case: "drained", value: create(DrainedSchema, { lastSequence: BigInt(last) }) } }) as ReceiveResponse;

type Receive = (req: { afterSequence: bigint }, opts: { signal: AbortSignal }) => AsyncIterable<ReceiveResponse>;

/** Loop dependencies with `receive` as the server's stream; every Ack and processed sequence is recorded, the state kept in memory. */
function fakeDeps(receive: Receive) {
  const acks: number[][] = [];
  const processed: number[] = [];
  let saved: ReceiveState = { cursor: 0, pendingAcks: [] };
  const deps = {
    api: {
      delivery: { receive },
      channel: {
        ack: async (req: { sequences: bigint[] }) => {
          acks.push(req.sequences.map(Number));
          return { deleted: req.sequences.length };
        },
      },
      invalidate: () => {},
    },
    store: {
      getReceiveState: async () => structuredClone(saved),
      setReceiveState: async (s: ReceiveState) => {
        saved = structuredClone(s);
      },
    },
    emit: () => {},
    process: async (m: { sequence: bigint }) => void processed.push(Number(m.sequence)),
    onFatal: () => {},
    backoff: { baseMs: 1, maxMs: 1 },
  } as unknown as ReceiveLoopDeps;
  return { deps, acks, processed, saved: () => saved };
}

/** Resolves when the call is aborted (a stream that stays open and quiet). */
const untilAborted = (signal: AbortSignal) => new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));

/** A server that sends `burst` messages at once, then stays quiet. */
function fakes(burst: number) {
  return fakeDeps(async function* (_req, opts) {
    for (let s = 1; s <= burst; s++) yield message(s);
    await untilAborted(opts.signal);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("receive loop acks", () => {
  it("acknowledges a burst with one Ack after ACK_DELAY_MS", async () => {
    const f = fakes(20);
    const loop = new ReceiveLoop(f.deps);
    loop.start();
    await sleep(ACK_DELAY_MS * 10);
    expect(f.acks).toEqual([Array.from({ length: 20 }, (_, i) => i + 1)]);
    expect(f.saved()).toEqual({ cursor: 20, pendingAcks: [] });
    await loop.stop();
  });

  it("a stop inside the delay still acks, or keeps the ack for the next start", async () => {
    const f = fakes(3);
    const loop = new ReceiveLoop(f.deps);
    loop.start();
    await sleep(0);
    await loop.stop();
    const sent = f.acks.flat();
    expect(f.saved().cursor).toBe(3);
    expect([...sent, ...f.saved().pendingAcks].sort()).toEqual([1, 2, 3]);
  });
});

describe("receive loop cursor", () => {
  it("advances with the backlog only: a stream that breaks after out-of-order live mail resumes below the mail it has not had", async () => {
    const opened: number[] = [];
    // The first stream: backlog 1, 2; live 9 (stored through this instance), then the
    // connection breaks before 7 (stored earlier through another instance) arrives.
    // The second: whatever is stored after its after_sequence.
    const mailbox = [1, 2, 7, 9];
    const f = fakeDeps(async function* (req, opts) {
      const after = Number(req.afterSequence);
      opened.push(after);
      if (opened.length === 1) {
        yield* [message(1), message(2), drained(2), message(9)];
        throw new Error("connection reset");
      }
      if (opened.length === 2) yield* [...mailbox.filter((s) => s > after && !f.processed.includes(s)).map(message), drained(after)];
      else await untilAborted(opts.signal);
    });
    const loop = new ReceiveLoop(f.deps);
    loop.start();
    for (let i = 0; i < 200 && opened.length < 3; i++) await sleep(5);
    await loop.stop();
    expect(opened.slice(0, 2)).toEqual([0, 2]);
    expect(f.processed.sort((a, b) => a - b)).toEqual([1, 2, 7, 9]);
    expect(f.saved().cursor).toBe(7);
  });
});
