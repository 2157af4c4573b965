/**
 * The receive loop's cursor (the after_sequence it resumes with) never passes mail it has not
 * received. Live mail (after Drained) can come out of sequence order when it was stored at
 * the same time through two server instances; had the cursor followed it, a stream that broke
 * between the two would resume above the late one and skip it. Fakes for the server and the
 * store; the loop is the real one.
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { MailboxMessageSchema } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { DrainedSchema, type ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { ReceiveLoop, type ReceiveLoopDeps } from "../src/delivery/receive-loop.js";
import type { ReceiveState } from "../src/store/conversation-store.js";

const message = (seq: number): ReceiveResponse =>
  ({ event: { case: "message", value: create(MailboxMessageSchema, { sequence: BigInt(seq), messageId: new Uint8Array(16) }) } }) as ReceiveResponse;
const drained = (last: number): ReceiveResponse =>
  ({ event: { case: "drained", value: create(DrainedSchema, { lastSequence: BigInt(last) }) } }) as ReceiveResponse;

describe("receive loop cursor", () => {
  it("advances with the backlog only: a stream that breaks after out-of-order live mail resumes below the mail it has not had", async () => {
    const opened: number[] = [];
    const processed: number[] = [];
    let saved: ReceiveState = { cursor: 0, pendingAcks: [] };
    // The first stream: backlog 1, 2; live 9 (stored through this instance), then the
    // connection breaks before 7 (stored earlier through another instance) arrives.
    // The second: whatever is stored after its after_sequence.
    const mailbox = [1, 2, 7, 9];
    const streams = [
      (_after: number) => [message(1), message(2), drained(2), message(9)],
      (after: number) => [...mailbox.filter((s) => s > after && !processed.includes(s)).map(message), drained(after)],
    ];
    const deps = {
      api: {
        delivery: {
          receive: async function* (req: { afterSequence: bigint }, opts: { signal: AbortSignal }) {
            const after = Number(req.afterSequence);
            opened.push(after);
            const script = streams[opened.length - 1];
            if (!script) return void (await new Promise<void>((r) => opts.signal.addEventListener("abort", () => r(), { once: true })));
            yield* script(after);
            if (opened.length === 1) throw new Error("connection reset");
          },
        },
        channel: { ack: async (req: { sequences: bigint[] }) => ({ deleted: req.sequences.length }) },
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
    const loop = new ReceiveLoop(deps);
    loop.start();
    for (let i = 0; i < 200 && opened.length < 3; i++) await new Promise((r) => setTimeout(r, 5));
    await loop.stop();
    expect(opened.slice(0, 2)).toEqual([0, 2]);
    expect(processed.sort((a, b) => a - b)).toEqual([1, 2, 7, 9]);
    expect(saved.cursor).toBe(7);
  });
});
