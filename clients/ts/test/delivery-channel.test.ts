/**
 * DeliveryChannel: Send and Ack pipelined on one Session stream, results matched by id, error
 * results turned back into the unary ConnectError, a session that ends fails only what was in
 * flight and the next call reopens, and a server without Session makes it fall back to the
 * unary calls for good. In-memory router transport (the real-server path runs in every
 * Messenger integration test, whose default transport uses Session).
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import {
  DeliveryService,
  SendResponseSchema,
  SessionResponseSchema,
  type SessionRequest,
  type SessionResponse,
  type SendResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeliveryChannel } from "../src/transport/delivery-channel.js";
import { unaryDeadline } from "../src/transport/call-deadline.js";

const stored = (seq: bigint) => create(SendResponseSchema, { outcome: { case: "stored", value: { entries: [{ sequence: seq }] } } });

function rig(impl: Partial<ServiceImpl<typeof DeliveryService>>, deadlineMs?: number) {
  const calls: string[] = [];
  const transport = createRouterTransport(({ service }) => service(DeliveryService, impl), {
    transport: { interceptors: [(next) => (req) => (calls.push(req.method.name), next(req))] },
  });
  return { channel: new DeliveryChannel(createClient(DeliveryService, transport), true, deadlineMs), calls };
}

/** A Session that answers sends with sequence = id * 10, acks with deleted = count, and errors for id 14 (the call after 12 sends and an ack). */
async function* session(reqs: AsyncIterable<SessionRequest>): AsyncGenerator<SessionResponse> {
  for await (const r of reqs) {
    if (r.kind.case === "send") {
      const id = r.kind.value.id;
      yield create(SessionResponseSchema, {
        kind: {
          case: "sendResult",
          value:
            id === 14n
              ? { id, result: { case: "error", value: { code: "RESOURCE_EXHAUSTED", message: "server busy", retryAfterMs: 200 } } }
              : { id, result: { case: "response", value: stored(id * 10n) } },
        },
      });
    } else if (r.kind.case === "ack") {
      yield create(SessionResponseSchema, {
        kind: { case: "ackResult", value: { id: r.kind.value.id, result: { case: "response", value: { deleted: r.kind.value.request!.sequences.length } } } },
      });
    }
  }
}

const seqOf = (r: Awaited<ReturnType<DeliveryChannel["send"]>>) => (r.outcome.case === "stored" ? r.outcome.value.entries[0].sequence : -1n);

describe("DeliveryChannel", () => {
  it("pipelines sends and acks on one Session and matches results by id", async () => {
    const { channel, calls } = rig({ session });
    const results = await Promise.all(Array.from({ length: 12 }, () => channel.send({ messageId: new Uint8Array(16) })));
    expect(results.map(seqOf)).toEqual(Array.from({ length: 12 }, (_, i) => BigInt((i + 1) * 10)));
    expect((await channel.ack({ sequences: [1n, 2n, 3n] })).deleted).toBe(3);
    expect(calls).toEqual(["Session"]);
    // An error result is the unary call's error: code, message and retry header.
    const err = await channel.send({}).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect({ code: err.code, message: err.rawMessage, retry: err.metadata.get("sealpost-retry-after-ms") }).toEqual({
      code: Code.ResourceExhausted,
      message: "server busy",
      retry: "200",
    });
    channel.close();
  });

  it("fails what was in flight when the session ends, and reopens for the next call", async () => {
    let opened = 0;
    const { channel, calls } = rig({
      async *session(reqs) {
        opened++;
        if (opened === 1) {
          for await (const _ of reqs) throw new ConnectError("nats went away", Code.Unavailable);
        }
        yield* session(reqs);
      },
    });
    const err = await channel.send({}).catch((e) => e);
    expect(err.code).toBe(Code.Unavailable);
    expect(seqOf(await channel.send({}))).toBe(10n); // ids start again on the new stream
    expect(calls).toEqual(["Session", "Session"]);
    channel.close();
  });

  it("a send the session never answers fails with DEADLINE_EXCEEDED and the next call opens a new session", async () => {
    let opened = 0;
    const { channel, calls } = rig(
      {
        async *session(reqs) {
          opened++;
          // The first stream takes requests and never answers (a stalled server or proxy).
          if (opened === 1) for await (const _ of reqs);
          yield* session(reqs);
        },
      },
      100,
    );
    const err = await channel.send({}).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(err.rawMessage).toBe("no answer from the server within 0.1 s");
    expect(seqOf(await channel.send({}))).toBe(10n);
    expect(calls).toEqual(["Session", "Session"]);
    channel.close();
  });

  it("falls back to unary Send and Ack for good when the server has no Session", async () => {
    const { channel, calls } = rig({ send: () => stored(7n), ack: (req) => ({ deleted: req.sequences.length }) });
    expect(seqOf(await channel.send({}))).toBe(7n);
    expect(channel.usingSession).toBe(false);
    expect((await channel.ack({ sequences: [5n] })).deleted).toBe(1);
    expect(calls).toEqual(["Session", "Send", "Ack"]);
  });
});

describe("unaryDeadline", () => {
  const never = () => new Promise<never>(() => {});
  const client = (send: () => Promise<SendResponse> | SendResponse, ms: number) =>
    createClient(
      DeliveryService,
      createRouterTransport(({ service }) => service(DeliveryService, { send }), { transport: { interceptors: [unaryDeadline(ms)] } }),
    );

  it("fails a unary call nobody answers with DEADLINE_EXCEEDED", async () => {
    const err = await client(never, 100)
      .send({})
      .catch((e) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(err.rawMessage).toBe("no answer from the server within 0.1 s");
  });

  it("leaves answered calls and a caller's own timeout alone", async () => {
    const slow = () => new Promise<SendResponse>((r) => setTimeout(() => r(stored(3n)), 300));
    expect(seqOf(await client(() => stored(1n), 100).send({}))).toBe(1n);
    // The call's own 2 s timeout wins over the 100 ms default.
    expect(seqOf(await client(slow, 100).send({}, { timeoutMs: 2000 }))).toBe(3n);
  });
});
