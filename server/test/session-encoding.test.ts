/** The hand encoders of the two hot answers give exactly protobuf-es's bytes, and hand everything else to it. */
import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ReceiveResponseSchema,
  SessionResponseSchema,
  StoredEntrySchema,
  StoredSchema,
  type ReceiveResponse,
  type SessionResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { MailboxMessageSchema, type MailboxMessage } from "@sealpost/gen/sealpost/delivery/v1/mailbox_pb.js";
import { encodeStored, receiveResponseFrame, sessionResponseFrame } from "../src/delivery/session-encoding.js";
import { envelope } from "../src/wire-frames.js";

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/** A small deterministic generator (the cases are the same every run). */
function rng(seed: number) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
}

function messages(): MailboxMessage[] {
  const r = rng(42);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
  const big = (max: number) => BigInt(Math.floor(r() * max));
  const out: MailboxMessage[] = [create(MailboxMessageSchema, {})];
  for (let i = 0; i < 200; i++) {
    const sealed = r() < 0.3;
    out.push(
      create(MailboxMessageSchema, {
        sequence: [0n, 1n, 127n, 128n, 2n ** 53n - 1n, big(1e12), 2n ** 53n, 2n ** 64n - 1n][i % 8],
        messageId: r() < 0.9 ? bytes(16) : new Uint8Array(0),
        sender: sealed ? undefined : { accountId: [`acct-${i}-é`, `acct_${i}`, ""][i % 3], deviceId: [0, 1, 127, 128, 2 ** 31 - 1][i % 5] },
        serverTimestampMs: [0n, 1765000000000n, -1n, big(2 ** 40)][i % 4],
        sharedBody: bytes([0, 1, 127, 128, 1024, 70000][i % 6]),
        entry: bytes([0, 160, 4096][i % 3]),
        ephemeral: r() < 0.2,
        sealed,
      }),
    );
  }
  return out;
}

describe("session encoding", () => {
  it("encodes a mailbox message as toBinary does, in a ReceiveResponse and in a SessionResponse", () => {
    for (const m of messages()) {
      const ev = create(ReceiveResponseSchema, { event: { case: "message", value: m } });
      expect(hex(receiveResponseFrame(ev))).toBe(hex(envelope(0, toBinary(ReceiveResponseSchema, ev))));
      const s = create(SessionResponseSchema, { kind: { case: "mailbox", value: ev } });
      expect(hex(sessionResponseFrame(s))).toBe(hex(envelope(0, toBinary(SessionResponseSchema, s))));
    }
  });

  it("encodes a Stored send result as toBinary does (ids, entries, times, the duplicate flag)", () => {
    const r = rng(7);
    for (let i = 0; i < 200; i++) {
      const entries = Array.from({ length: i % 5 }, (_, k) =>
        create(StoredEntrySchema, { device: k % 4 === 3 ? undefined : { accountId: `a${k}`, deviceId: k }, sequence: BigInt(Math.floor(r() * 1e9)) }),
      );
      const stored = create(StoredSchema, { entries, serverTimestampMs: i % 3 ? BigInt(1765000000000 + i) : 0n, duplicate: i % 2 === 0 });
      const s: SessionResponse = create(SessionResponseSchema, {
        kind: {
          case: "sendResult",
          value: { id: BigInt(i % 7 === 0 ? 0 : i * 1000), result: { case: "response", value: { outcome: { case: "stored", value: stored } } } },
        },
      });
      expect(hex(sessionResponseFrame(s))).toBe(hex(envelope(0, toBinary(SessionResponseSchema, s))));
      expect(hex(encodeStored(stored))).toBe(hex(toBinary(StoredSchema, stored)));
    }
  });

  it("hands every other answer to toBinary unchanged", () => {
    const others: SessionResponse[] = [
      create(SessionResponseSchema, { kind: { case: "mailbox", value: { event: { case: "drained", value: { lastSequence: 9n } } } } }),
      create(SessionResponseSchema, { kind: { case: "ackResult", value: { id: 3n, result: { case: "response", value: { deleted: 2 } } } } }),
      create(SessionResponseSchema, {
        kind: { case: "sendResult", value: { id: 4n, result: { case: "error", value: { code: "RESOURCE_EXHAUSTED", message: "busy", retryAfterMs: 200 } } } },
      }),
      create(SessionResponseSchema, {
        kind: {
          case: "sendResult",
          value: { id: 5n, result: { case: "response", value: { outcome: { case: "mismatchedDevices", value: { accounts: [] } } } } },
        },
      }),
    ];
    for (const s of others) {
      expect(hex(sessionResponseFrame(s))).toBe(hex(envelope(0, toBinary(SessionResponseSchema, s))));
    }
    const drained: ReceiveResponse = create(ReceiveResponseSchema, { event: { case: "drained", value: { lastSequence: 1n } } });
    expect(hex(receiveResponseFrame(drained))).toBe(hex(envelope(0, toBinary(ReceiveResponseSchema, drained))));
  });
});
