/**
 * Bad requests get a precise code and message, and never change stored mail.
 */
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { DeliveryService, SendEntrySchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { startTestNats, startTestServer, createTestAccount, plainTransport, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { mailboxPartition, mailboxStreamName } from "../src/nats/layout.js";
import { bytes, deliveryOf, entriesFor, Inbox, mailboxSequences, newMessageId, storedOf, type DeliveryClient } from "./delivery-helpers.js";

let nats: TestNats;
let server: RunningServer;
let probe: Nats;
let alice: TestAccount;
let bob: TestAccount;
/** A device of another account whose mailbox shares alice's stream (partition), to try to ack its sequences. */
let mallory: TestAccount;
let out: DeliveryClient;
let bobSeqs: number[];
let mallorySeqs: number[];

const P = 4;
function accountInPartitionOf(target: { accountId: string; deviceId: number }, prefix: string): string {
  const want = mailboxPartition(target.accountId, target.deviceId, P);
  for (let i = 0; ; i++) if (mailboxPartition(`${prefix}${i}`, 1, P) === want) return `${prefix}${i}`;
}

async function snapshot() {
  return {
    bob: await mailboxSequences(probe, P, bob.devices[0].address),
    bob2: await mailboxSequences(probe, P, bob.devices[1].address),
    mallory: await mailboxSequences(probe, P, mallory.devices[0].address),
  };
}

async function rejected(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected a rejection");
}

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url, { mailboxPartitions: P });
  probe = await connectNats(nats.url, "bad-inputs-probe");
  [alice, bob] = await Promise.all([
    createTestAccount(server.url, "bad-alice", { oneTimePrekeys: 1 }),
    createTestAccount(server.url, "bad-bob", { devices: 2, oneTimePrekeys: 1 }),
  ]);
  mallory = await createTestAccount(server.url, accountInPartitionOf(bob.devices[0].address, "bad-mallory-"), { oneTimePrekeys: 1 });
  out = deliveryOf(alice.devices[0], server.url);
  for (let i = 0; i < 2; i++) await out.send({ messageId: newMessageId(), sharedBody: bytes(`keep-${i}`), entries: entriesFor(bob.devices) });
  await out.send({ messageId: newMessageId(), sharedBody: bytes("mallory's"), entries: entriesFor(mallory.devices) });
  ({ bob: bobSeqs, mallory: mallorySeqs } = await snapshot());
  expect(bobSeqs).toHaveLength(2);
  expect(mallorySeqs).toHaveLength(1);
});
afterAll(async () => {
  await probe?.nc.close();
  await server?.close();
  await nats?.stop();
});

describe("Send rejects bad input and stores nothing", () => {
  const entry = (accountId: string, deviceId: number, size = 4) =>
    create(SendEntrySchema, { device: create(DeviceAddressSchema, { accountId, deviceId }), entry: new Uint8Array(size) });
  const cases: [string, () => Parameters<DeliveryClient["send"]>[0], Code, string][] = [
    [
      "a short message id",
      () => ({ messageId: new Uint8Array(15), entries: entriesFor(bob.devices) }),
      Code.InvalidArgument,
      "message_id must be exactly 16 bytes, got 15",
    ],
    [
      "an oversize body",
      () => ({ messageId: newMessageId(), sharedBody: new Uint8Array(256 * 1024 + 1), entries: entriesFor(bob.devices) }),
      Code.ResourceExhausted,
      "shared_body is 262145 bytes; max_body_bytes is 262144 (send larger content as an attachment)",
    ],
    [
      "too many entries",
      () => ({ messageId: newMessageId(), entries: Array.from({ length: 1001 }, (_, i) => entry("bad-bob", i + 1)) }),
      Code.ResourceExhausted,
      "1001 entries; max_entries_per_send is 1000",
    ],
    ["no entries", () => ({ messageId: newMessageId(), entries: [] }), Code.InvalidArgument, "entries must not be empty (one entry per recipient device)"],
    [
      "an oversize entry",
      () => ({ messageId: newMessageId(), entries: [entry("bad-bob", 1, 4097), entry("bad-bob", 2)] }),
      Code.ResourceExhausted,
      "entries[0].entry is 4097 bytes; max_entry_bytes is 4096",
    ],
    [
      "a device addressed twice",
      () => ({ messageId: newMessageId(), entries: [entry("bad-bob", 1), entry("bad-bob", 2), entry("bad-bob", 1)] }),
      Code.InvalidArgument,
      "entries[2] addresses device bad-bob/1 a second time (one entry per device)",
    ],
    [
      "the sending device itself",
      () => ({ messageId: newMessageId(), entries: [entry("bad-bob", 1), entry("bad-alice", 1)] }),
      Code.InvalidArgument,
      "entries[1] addresses the sending device bad-alice/1 itself",
    ],
    [
      "a malformed account id",
      () => ({ messageId: newMessageId(), entries: [entry("Bad.Bob", 1)] }),
      Code.InvalidArgument,
      'entries[0].device.account_id "Bad.Bob" is not an account id (3 to 64 of [a-z0-9_-], starting with a letter or digit)',
    ],
    [
      "device id 0",
      () => ({ messageId: newMessageId(), entries: [entry("bad-bob", 0)] }),
      Code.InvalidArgument,
      "entries[0].device.device_id must be 1 to 2147483647, got 0",
    ],
    [
      "an entry without device",
      () => ({ messageId: newMessageId(), entries: [create(SendEntrySchema, {})] }),
      Code.InvalidArgument,
      "entries[0].device is required",
    ],
    ["an unknown account", () => ({ messageId: newMessageId(), entries: [entry("bad-nobody", 1)] }), Code.NotFound, "account bad-nobody not found"],
  ];
  for (const [name, req, code, message] of cases) {
    it(`rejects ${name}`, async () => {
      const before = await snapshot();
      const err = await rejected(out.send(req()));
      expect({ code: err.code, message: err.rawMessage }).toEqual({ code, message });
      expect(await snapshot()).toEqual(before);
    });
  }

  it("answers an unknown device of a known account with MismatchedDevices (extra) and stores nothing", async () => {
    const before = await snapshot();
    const res = await out.send({ messageId: newMessageId(), sharedBody: bytes("x"), entries: [...entriesFor(bob.devices), entry("bad-bob", 9)] });
    expect(res.outcome.case).toBe("mismatchedDevices");
    expect(res.outcome.value).toMatchObject({ accounts: [{ accountId: "bad-bob", extraDeviceIds: [9], missingDeviceIds: [], staleDeviceIds: [] }] });
    expect(await snapshot()).toEqual(before);
  });

  it("answers malformed protobuf over HTTP/2 (the native path's hand decoder gives up) as protobuf-es does: INVALID_ARGUMENT, nothing stored", async () => {
    const before = await snapshot();
    // A raw Connect unary POST over HTTP/2, as any other client stack could send it.
    const post = (body: Uint8Array) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const session = http2.connect(server.url);
        session.on("error", reject);
        const req = session.request({
          ":method": "POST",
          ":path": "/sealpost.delivery.v1.DeliveryService/Send",
          "content-type": "application/proto",
          "connect-protocol-version": "1",
          authorization: `Bearer ${alice.devices[0].token}`,
        });
        let status = 0;
        const chunks: Buffer[] = [];
        req.on("response", (h) => (status = Number(h[":status"])));
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          session.close();
          resolve({ status, body: Buffer.concat(chunks).toString("utf8") });
        });
        req.on("error", reject);
        req.end(body);
      });
    // A message id whose length runs past the end; an entry's device whose account id is not UTF-8.
    const truncated = await post(Uint8Array.of(0x0a, 0x10, 0x01));
    expect(truncated.status).toBe(400);
    expect(JSON.parse(truncated.body)).toEqual({ code: "invalid_argument", message: "parse binary: premature EOF" });
    const notUtf8 = await post(Uint8Array.of(0x1a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff));
    expect(notUtf8.status).toBe(400);
    expect(JSON.parse(notUtf8.body).code).toBe("invalid_argument");
    expect(JSON.parse(notUtf8.body).message).toMatch(/^parse binary: /);
    expect(await snapshot()).toEqual(before);
  });

  it("rejects a call without a token", async () => {
    const err = await rejected(createClient(DeliveryService, plainTransport(server.url)).send({ messageId: newMessageId(), entries: entriesFor(bob.devices) }));
    expect(err.code).toBe(Code.Unauthenticated);
  });
});

describe("Ack only deletes the caller's own mail", () => {
  const ackAs = (acct: TestAccount, i = 0) => deliveryOf(acct.devices[i], server.url);

  it("answers another device's pending mail, its acked mail and unused sequences alike (no oracle), deleting nothing", async () => {
    // Mail mallory already read and acked (her partition is bob's).
    const read = storedOf(await out.send({ messageId: newMessageId(), sharedBody: bytes("read"), entries: entriesFor(mallory.devices) })).entries[0].sequence;
    expect((await ackAs(mallory).ack({ sequences: [read] })).deleted).toBe(1);
    const before = await snapshot();
    const last = (await probe.jsm.streams.info(mailboxStreamName(mailboxPartition("bad-bob", 1, P)))).state.last_seq;
    const answers = [];
    for (const q of [BigInt(mallorySeqs[0]), read, BigInt(last + 5), BigInt(last + 1_000_000)]) answers.push(await ackAs(bob).ack({ sequences: [q] }));
    expect(answers.map((a) => a.deleted)).toEqual([0, 0, 0, 0]);
    expect(await snapshot()).toEqual(before);
  });

  const shapes: [string, bigint[], string][] = [
    ["no sequences", [], "sequences must not be empty"],
    ["sequence 0", [0n], "sequences[0] is 0; mailbox sequences are 1 to 2^53-1"],
    ["too many sequences", Array.from({ length: 1001 }, (_, i) => BigInt(i + 1)), "at most 1000 sequences per Ack, got 1001"],
  ];
  for (const [name, sequences, message] of shapes) {
    it(`rejects ${name}`, async () => {
      const before = await snapshot();
      const err = await rejected(ackAs(bob).ack({ sequences }));
      expect({ code: err.code, message: err.rawMessage }).toEqual({ code: Code.InvalidArgument, message });
      expect(await snapshot()).toEqual(before);
    });
  }

  it("still acks the caller's own mail afterwards", async () => {
    expect((await ackAs(bob).ack({ sequences: [BigInt(bobSeqs[0])] })).deleted).toBe(1);
    expect(await mailboxSequences(probe, P, bob.devices[0].address)).toEqual(bobSeqs.slice(1));
    expect(await mailboxSequences(probe, P, mallory.devices[0].address)).toEqual(mallorySeqs);
  });
});

describe("Receive rejects bad input", () => {
  it("rejects max_in_flight above the server limit", async () => {
    const inbox = new Inbox(deliveryOf(bob.devices[0], server.url), { maxInFlight: 257 });
    const err = await inbox.done;
    expect({ code: err?.code, message: err?.rawMessage }).toEqual({
      code: Code.InvalidArgument,
      message: "max_in_flight 257 exceeds the server's max_in_flight 256 (0 means the server maximum)",
    });
  });

  it("rejects a stream without a token", async () => {
    const inbox = new Inbox(createClient(DeliveryService, plainTransport(server.url)));
    expect((await inbox.done)?.code).toBe(Code.Unauthenticated);
  });
});

it("a successful send after all the rejects is still stored normally", async () => {
  const res = storedOf(await out.send({ messageId: newMessageId(), sharedBody: bytes("fine"), entries: entriesFor(bob.devices) }));
  expect(res.entries).toHaveLength(2);
});
