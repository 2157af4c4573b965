/**
 * The receive loop's acks: a burst of messages is acknowledged by one Ack (ACK_DELAY_MS after
 * its first message), and a stop inside the delay loses no ack: it goes out at once or is
 * kept in the saved state for the next start. Fakes for the server and the store; the loop is
 * the real one.
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { MailboxMessageSchema } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import type { ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { ACK_DELAY_MS, ReceiveLoop } from "../src/delivery/receive-loop.js";
import type { ReceiveState } from "../src/store/conversation-store.js";
import type { ReceiveLoopDeps } from "../src/delivery/receive-loop.js";

const message = (seq: number): ReceiveResponse =>
  ({ event: { case: "message", value: create(MailboxMessageSchema, { sequence: BigInt(seq), messageId: new Uint8Array(16) }) } }) as ReceiveResponse;

/** A server that sends `burst` messages at once, then stays quiet; and a store in memory. */
function fakes(burst: number) {
  const acks: number[][] = [];
  let saved: ReceiveState = { cursor: 0, pendingAcks: [] };
  const deps = {
    api: {
      delivery: {
        receive: async function* (_req: unknown, opts: { signal: AbortSignal }) {
          for (let s = 1; s <= burst; s++) yield message(s);
          await new Promise<void>((r) => opts.signal.addEventListener("abort", () => r(), { once: true }));
        },
      },
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
    process: async () => {},
    onFatal: () => {},
  } as unknown as ReceiveLoopDeps;
  return { deps, acks, saved: () => saved };
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
