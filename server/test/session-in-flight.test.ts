/**
 * A Session processes at most max_in_flight sends and acks at once: the next request waits
 * for one to finish, then goes in order. runSession with fake services whose answers the test
 * releases one by one.
 */
import { create } from "@bufbuild/protobuf";
import { describe, expect, it, vi } from "vitest";
import {
  AckResponseSchema,
  SendResponseSchema,
  SessionRequestSchema,
  type SendRequest,
  type SessionRequest,
  type SessionResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { Pushable } from "@sealpost/client/util";
import { CallStop } from "../src/delivery/call-stop.js";
import { runSession, type SessionDeps } from "../src/delivery/session.js";
import { WAIT } from "./delivery-helpers.js";

describe("Session in-flight limit", () => {
  it("holds the third of three requests until one of two in flight is answered, then keeps their order", async () => {
    const started: string[] = [];
    const release: (() => void)[] = [];
    const gate = (what: string) =>
      new Promise<void>((r) => {
        started.push(what);
        release.push(r);
      });
    const deps: SessionDeps = {
      send: async (_d, req: SendRequest) => {
        await gate(`send ${req.messageId[0]}`);
        return create(SendResponseSchema, { outcome: { case: "stored", value: { entries: [] } } });
      },
      ack: async () => {
        await gate("ack");
        return create(AckResponseSchema, { deleted: 0 });
      },
      receive: async function* () {},
      maxInFlight: 2,
      now: Date.now,
    };
    const requests = new Pushable<SessionRequest>();
    const send = (id: number) =>
      requests.push(create(SessionRequestSchema, { kind: { case: "send", value: { id: BigInt(id), request: { messageId: Uint8Array.of(id) } } } }));
    const stop = new CallStop();
    const responses: SessionResponse[] = [];
    const done = (async () => {
      for await (const r of runSession(deps, { accountId: "a", deviceId: 1 }, requests, stop)) responses.push(r);
    })();
    send(1);
    send(2);
    requests.push(create(SessionRequestSchema, { kind: { case: "ack", value: { id: 3n, request: { sequences: [1n] } } } }));
    send(4);
    await vi.waitFor(() => expect(started).toEqual(["send 1", "send 2"]), WAIT);
    // Two in flight: the ack waits, however long.
    await new Promise((r) => setTimeout(r, 50));
    expect(started).toEqual(["send 1", "send 2"]);
    release.shift()!();
    await vi.waitFor(() => expect(started).toEqual(["send 1", "send 2", "ack"]), WAIT);
    release.shift()!();
    await vi.waitFor(() => expect(started).toEqual(["send 1", "send 2", "ack", "send 4"]), WAIT);
    release.shift()!();
    release.shift()!();
    requests.end();
    await done;
    const ids = responses.map((r) => (r.kind.case === "sendResult" || r.kind.case === "ackResult" ? Number(r.kind.value.id) : -1));
    expect(ids).toEqual([1, 2, 3, 4]);
  });
});
