/**
 * Reply headers read from the bytes (nats/reply-headers.ts) against nats.js's own decoding,
 * on replies a real nats-server sends: direct gets that found a message (with the stored
 * message's own headers, one of them twice), a 404, a 503 (no responders), and a PubAck with
 * no headers. It also holds nats.js to the internals the fast path reads: if an upgrade moves
 * them, the first test fails instead of every reply silently taking the slow path.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInbox, headers as natsHeaders, type Msg } from "@nats-io/nats-core";
import { startTestNats, type TestNats } from "@sealpost/test-support";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { readsRawHeaders, replyHeaders, replyStatus } from "../src/nats/reply-headers.js";

let nats: TestNats;
let conn: Nats;
/** Replies as nats.js hands them to a subscription callback, as the publisher gets them. */
let replies: Msg[] = [];
const inbox = createInbox();

async function ask(subject: string, body: string): Promise<Msg> {
  const n = replies.length;
  conn.nc.publish(subject, new TextEncoder().encode(body), { reply: `${inbox}.${n}` });
  for (let i = 0; i < 200 && replies.length <= n; i++) await new Promise((r) => setTimeout(r, 10));
  expect(replies.length).toBeGreaterThan(n);
  return replies[n];
}

beforeAll(async () => {
  nats = await startTestNats({ forceOwn: true });
  conn = await connectNats(nats.url);
  await conn.jsm.streams.add({ name: "RH", subjects: ["rh.>"], allow_direct: true });
  conn.nc.subscribe(`${inbox}.*`, { callback: (_err, msg) => void replies.push(msg) });
  const h = natsHeaders();
  h.append("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  h.append("X-Twice", "first");
  h.append("X-Twice", "second");
  h.append("X-Spaced", "  padded value  ");
  h.append("X-Unicode", "grüße ✓");
  await conn.js.publish("rh.with", new TextEncoder().encode("stored"), { headers: h });
  await conn.js.publish("rh.plain", Uint8Array.of(1, 2, 3));
});
afterAll(async () => {
  await conn?.nc.close();
  await nats?.stop();
  replies = [];
});

/** Every answer the byte reading gives equals nats.js's for the same reply. */
function expectSameAsNats(msg: Msg): void {
  expect(readsRawHeaders(msg)).toBe(true);
  const ours = replyHeaders(msg);
  const theirs = msg.headers;
  expect(replyStatus(msg)).toBe(theirs?.code ?? 0);
  if (!theirs) {
    expect(ours).toBeUndefined();
    return;
  }
  expect(ours?.code).toBe(theirs.code);
  expect(ours?.description).toBe(theirs.description);
  for (const k of [...theirs.keys(), "Absent-Header", "nats-sequence"]) expect(ours?.get(k), k).toBe(theirs.get(k));
}

describe("reply headers from the bytes", () => {
  it("reads a found direct get as nats.js does, the stored message's own headers included", async () => {
    const m = await ask("$JS.API.DIRECT.GET.RH", JSON.stringify({ last_by_subj: "rh.with" }));
    expectSameAsNats(m);
    const h = replyHeaders(m)!;
    expect(h.code).toBe(0);
    expect(h.get("Nats-Subject")).toBe("rh.with");
    expect(Number(h.get("Nats-Sequence"))).toBe(1);
    expect(h.get("traceparent")).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    // The first of a repeated name, and values trimmed, as MsgHdrs.get answers.
    expect(h.get("X-Twice")).toBe("first");
    expect(h.get("X-Spaced")).toBe("padded value");
    expect(h.get("X-Unicode")).toBe("grüße ✓");
    expect(new TextDecoder().decode(m.data)).toBe("stored");
  });

  it("reads a direct get of a message stored without headers", async () => {
    const m = await ask("$JS.API.DIRECT.GET.RH", JSON.stringify({ seq: 2 }));
    expectSameAsNats(m);
    expect(replyHeaders(m)!.get("Nats-Subject")).toBe("rh.plain");
    expect([...m.data]).toEqual([1, 2, 3]);
  });

  it("reads the 404 of a direct get that found nothing, with its description", async () => {
    const m = await ask("$JS.API.DIRECT.GET.RH", JSON.stringify({ last_by_subj: "rh.none" }));
    expectSameAsNats(m);
    expect(replyStatus(m)).toBe(404);
    expect(replyHeaders(m)!.description).toMatch(/not found/i);
  });

  it("reads the 503 nats-server sends when nobody answers a request", async () => {
    const m = await ask("nobody.listens.here", "{}");
    expectSameAsNats(m);
    expect(replyStatus(m)).toBe(503);
  });

  it("finds no headers on a PubAck", async () => {
    const m = await ask("rh.acked", "x");
    expectSameAsNats(m);
    expect(replyStatus(m)).toBe(0);
    expect(replyHeaders(m)).toBeUndefined();
    expect(JSON.parse(new TextDecoder().decode(m.data)).stream).toBe("RH");
  });

  it("falls back to msg.headers on a message without nats.js's internals", () => {
    const h = natsHeaders(408, "Request Timeout");
    h.append("Nats-Pending-Messages", "3");
    const msg = { headers: h, data: new Uint8Array(0) } as unknown as Msg;
    expect(readsRawHeaders(msg)).toBe(false);
    expect(replyStatus(msg)).toBe(408);
    expect(replyHeaders(msg)?.get("Nats-Pending-Messages")).toBe("3");
    expect(replyStatus({ headers: undefined } as unknown as Msg)).toBe(0);
  });
});
