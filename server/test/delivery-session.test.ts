/**
 * DeliveryService.Session over real HTTP/2 (Connect and gRPC, connect-es clients) against a
 * real nats-server: pipelined sends with results by id, the mailbox and acks on the same
 * stream, per-request errors that leave the stream open, a second receive refused, the
 * half-close contract, and a session (and a Receive stream) ending when its token expires.
 * Each case runs on both server paths: the native HTTP/2 one (delivery/native-delivery.ts)
 * and connect-node's (a deadline header sends the call there), which must answer alike.
 */
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { DeliveryService, SessionRequestSchema, type SessionRequest, type SessionResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { createTestAccount, useTestServer, type TestDevice } from "@sealpost/test-support";
import { Pushable } from "@sealpost/client/util";
import { bytes, deliveryOf, entriesFor, Inbox, mailboxSequences, newMessageId, text, waitUntil } from "./delivery-helpers.js";

const server = useTestServer();

type Path = "native" | "connect-node";

/** Opens a Session for `device` (its token, or `token`) and records every response. */
function openSession(device: TestDevice, protocol: "connect" | "grpc", path: Path, token = device.token) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl: server.url, interceptors: [auth] })
      : createConnectTransport({ baseUrl: server.url, httpVersion: "2", useBinaryFormat: true, interceptors: [auth] });
  const pushable = new Pushable<SessionRequest>();
  const requests = {
    push: (r: Parameters<typeof create<typeof SessionRequestSchema>>[1]) => pushable.push(create(SessionRequestSchema, r)),
    end: () => pushable.end(),
  };
  const responses: SessionResponse[] = [];
  const abort = new AbortController();
  const done = (async () => {
    try {
      for await (const r of createClient(DeliveryService, transport).session(pushable, {
        signal: abort.signal,
        timeoutMs: path === "native" ? undefined : 600_000,
      }))
        responses.push(r);
      return undefined;
    } catch (e) {
      return ConnectError.from(e);
    }
  })();
  const results = () => responses.flatMap((r) => (r.kind.case === "sendResult" ? [r.kind.value] : []));
  const acks = () => responses.flatMap((r) => (r.kind.case === "ackResult" ? [r.kind.value] : []));
  const mail = () => responses.flatMap((r) => (r.kind.case === "mailbox" && r.kind.value.event.case === "message" ? [r.kind.value.event.value] : []));
  return { requests, responses, results, acks, mail, done, close: () => abort.abort() };
}

describe.each([
  ["connect", "native"],
  ["grpc", "native"],
  ["connect", "connect-node"],
  ["grpc", "connect-node"],
] as const)("Session over %s (HTTP/2), %s path", (protocol, path) => {
  it("pipelines 300 sends, delivers them on the recipient's session mailbox and acks them there", async () => {
    const alice = await createTestAccount(server.url, `sess-${protocol}-${path}-alice`, { oneTimePrekeys: 1 });
    const bob = await createTestAccount(server.url, `sess-${protocol}-${path}-bob`, { oneTimePrekeys: 1 });
    const inbox = openSession(bob.devices[0], protocol, path);
    inbox.requests.push({ kind: { case: "receive", value: {} } });
    await waitUntil("drained", () => inbox.responses.some((r) => r.kind.case === "mailbox" && r.kind.value.event.case === "drained"));
    const out = openSession(alice.devices[0], protocol, path);
    for (let i = 0; i < 300; i++) {
      out.requests.push({
        kind: {
          case: "send",
          value: { id: BigInt(i + 1), request: { messageId: newMessageId(), sharedBody: bytes(`s${i}`), entries: entriesFor(bob.devices) } },
        },
      });
    }
    await waitUntil("300 results", () => out.results().length === 300);
    expect(new Set(out.results().map((r) => r.id)).size).toBe(300);
    for (const r of out.results()) expect(r.result.case === "response" && r.result.value.outcome.case).toBe("stored");
    // The window (256 unacked) holds the rest until the first batch is acked.
    await waitUntil("a full window", () => inbox.mail().length === 256);
    inbox.requests.push({ kind: { case: "ack", value: { id: 1n, request: { sequences: inbox.mail().map((m) => m.sequence) } } } });
    await waitUntil("300 messages", () => inbox.mail().length === 300);
    inbox.requests.push({
      kind: {
        case: "ack",
        value: {
          id: 2n,
          request: {
            sequences: inbox
              .mail()
              .slice(256)
              .map((m) => m.sequence),
          },
        },
      },
    });
    // Sequential sends of one sender arrive in order.
    expect(inbox.mail().map((m) => text(m.sharedBody))).toEqual(Array.from({ length: 300 }, (_, i) => `s${i}`));
    await waitUntil("the ack results", () => inbox.acks().length === 2);
    expect(
      inbox
        .acks()
        .map((a) => (a.result.case === "response" ? a.result.value.deleted : a.result.value?.code))
        .reduce((x, y) => Number(x) + Number(y), 0),
    ).toBe(300);
    expect(await mailboxSequences(server.context.nats, server.context.layout.partitions, bob.devices[0].address)).toEqual([]);
    // Half-close: pending results are answered, then the stream ends OK.
    out.requests.push({
      kind: { case: "send", value: { id: 999n, request: { messageId: newMessageId(), sharedBody: bytes("last"), entries: entriesFor(bob.devices) } } },
    });
    out.requests.end();
    expect(await out.done).toBeUndefined();
    expect(out.results().at(-1)?.id).toBe(999n);
    inbox.close();
    await inbox.done;
  });

  it("answers a bad send with an error result (the unary code and message) and goes on; a second receive ends the stream", async () => {
    const alice = await createTestAccount(server.url, `sess2-${protocol}-${path}-alice`, { oneTimePrekeys: 1 });
    const bob = await createTestAccount(server.url, `sess2-${protocol}-${path}-bob`, { oneTimePrekeys: 1 });
    const s = openSession(alice.devices[0], protocol, path);
    s.requests.push({
      kind: { case: "send", value: { id: 1n, request: { messageId: new Uint8Array(15), sharedBody: bytes("x"), entries: entriesFor(bob.devices) } } },
    });
    s.requests.push({
      kind: { case: "send", value: { id: 2n, request: { messageId: newMessageId(), sharedBody: bytes("ok"), entries: entriesFor(bob.devices) } } },
    });
    s.requests.push({ kind: { case: "ack", value: { id: 3n, request: { sequences: [] } } } });
    await waitUntil("three results", () => s.results().length === 2 && s.acks().length === 1);
    const byId = new Map(s.results().map((r) => [r.id, r]));
    expect(byId.get(1n)?.result).toMatchObject({ case: "error", value: { code: "INVALID_ARGUMENT", message: "message_id must be exactly 16 bytes, got 15" } });
    expect(byId.get(2n)?.result.case).toBe("response");
    expect(s.acks()[0].result).toMatchObject({ case: "error", value: { code: "INVALID_ARGUMENT", message: "sequences must not be empty" } });
    s.requests.push({ kind: { case: "receive", value: {} } });
    s.requests.push({ kind: { case: "receive", value: {} } });
    const err = await s.done;
    expect({ code: err?.code, message: err?.rawMessage }).toEqual({
      code: Code.InvalidArgument,
      message: "the mailbox is already open on this session (one receive per stream)",
    });
  });

  it("refuses a session without a valid token, and ends one (and a Receive stream) when its token expires", async () => {
    const carol = await createTestAccount(server.url, `sess3-${protocol}-${path}-carol`, { devices: 2, oneTimePrekeys: 1 });
    const bad = openSession(carol.devices[0], protocol, path, "v1.nope");
    bad.requests.push({ kind: { case: "receive", value: {} } });
    expect((await bad.done)?.code).toBe(Code.Unauthenticated);
    const short = server.context.tokens.issue(carol.accountId, carol.devices[0].address.deviceId, 800).token;
    const s = openSession(carol.devices[0], protocol, path, short);
    s.requests.push({ kind: { case: "receive", value: {} } });
    // Another device (one mailbox stream per device: a second would replace the first).
    const short2 = server.context.tokens.issue(carol.accountId, carol.devices[1].address.deviceId, 800).token;
    const receive = new Inbox(deliveryOf({ ...carol.devices[1], token: short2 }, server.url));
    const err = await s.done;
    expect({ code: err?.code, message: err?.rawMessage }).toEqual({
      code: Code.Unauthenticated,
      message: "token expired; authenticate again and open a new session",
    });
    const rerr = await receive.done;
    expect({ code: rerr?.code, message: rerr?.rawMessage }).toEqual({
      code: Code.Unauthenticated,
      message: "token expired; authenticate again and reopen the stream",
    });
  });
});
