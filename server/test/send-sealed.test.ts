/**
 * SendSealed over the real stack (two instances on one nats-server, real accounts): a Send
 * with no token, opened by the recipient's access key, stored with no sender; refused with
 * one answer for every way the key does not open the account; rate limited per caller
 * address and per account; SetSealedAccess validated and seen by the other instance.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createHash, randomBytes } from "node:crypto";
import { DeliveryService, type SendSealedResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { SealedAccessMode } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { startTestNats, startTestServer, createTestAccount, plainTransport, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { Mailboxes } from "../src/delivery/mailbox.js";
import { bytes, deliveryOf, entriesFor, Inbox, mailboxSequences, newMessageId, text } from "./delivery-helpers.js";

let nats: TestNats;
let a: RunningServer;
let b: RunningServer;
let probe: Nats;
let n = 0;
async function accounts(devices: number[]): Promise<TestAccount[]> {
  const id = ++n;
  return Promise.all(devices.map((d, i) => createTestAccount(a.url, `sealed${id}-u${i}`, { devices: d, oneTimePrekeys: 1 })));
}
const sealedClient = (url: string) => createClient(DeliveryService, plainTransport(url));
const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());
const newAccessKey = () => new Uint8Array(randomBytes(16));
async function allowContacts(account: TestAccount, device: number, key: Uint8Array) {
  await account.devices[device].directory.setSealedAccess({ mode: SealedAccessMode.CONTACTS, accessKeySha256: sha256(key) });
}
function storedOf(res: SendSealedResponse) {
  if (res.outcome.case !== "stored") throw new Error(`expected Stored, got ${res.outcome.case}`);
  return res.outcome.value;
}
async function codeOf(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  if (!err) throw new Error("expected the call to fail");
  return { code: err.code, message: err.rawMessage };
}

beforeAll(async () => {
  nats = await startTestNats();
  a = await startTestServer(nats.url);
  b = await startTestServer(nats.url);
  probe = await connectNats(nats.url, "sealed-test-probe");
});
afterAll(async () => {
  await probe?.nc.close();
  await a?.close();
  await b?.close();
  await nats?.stop();
});

describe("SendSealed", () => {
  it("stores for every device of the account with no token and no sender; the stored bytes hold no sender id", async () => {
    const [alice, bob] = await accounts([1, 2]);
    const key = newAccessKey();
    await allowContacts(bob, 0, key);
    const res = await sealedClient(a.url).sendSealed({
      accountId: bob.accountId,
      accessKey: key,
      send: { messageId: newMessageId(), sharedBody: bytes("sealed body"), entries: entriesFor(bob.devices, "sealed") },
    });
    expect(storedOf(res).entries.map((e) => e.device?.deviceId)).toEqual(bob.devices.map((d) => d.address.deviceId));
    for (const d of bob.devices) {
      const inbox = new Inbox(deliveryOf(d, b.url));
      const [m] = await inbox.waitForMessages(1);
      await inbox.close();
      expect(text(m.sharedBody)).toBe("sealed body");
      expect(m.sealed).toBe(true);
      expect(m.sender).toBeUndefined();
    }
    // What JetStream holds for bob: no sender account id. (The control: the record of an
    // authenticated Send from alice holds hers, so the scan would see it.)
    await deliveryOf(alice.devices[0], a.url).send({ messageId: newMessageId(), sharedBody: bytes("signed"), entries: entriesFor(bob.devices) });
    const mb = new Mailboxes(probe, a.context.layout.partitions);
    for (const d of bob.devices) {
      const loc = mb.locate(d.address);
      const [sealed, authenticated] = await mailboxSequences(probe, a.context.layout.partitions, d.address);
      expect(Buffer.from((await mb.bySeq(loc.stream, sealed))!.data).includes(alice.accountId)).toBe(false);
      expect(Buffer.from((await mb.bySeq(loc.stream, authenticated))!.data).includes(alice.accountId)).toBe(true);
    }
  });

  it("answers a retry with the same message_id with the original sequences, marked duplicate", async () => {
    const [bob] = await accounts([1]);
    const key = newAccessKey();
    await allowContacts(bob, 0, key);
    const req = { accountId: bob.accountId, accessKey: key, send: { messageId: newMessageId(), sharedBody: bytes("once"), entries: entriesFor(bob.devices) } };
    const first = storedOf(await sealedClient(a.url).sendSealed(req));
    const again = storedOf(await sealedClient(b.url).sendSealed({ ...req, send: { ...req.send, retry: true } }));
    expect(again.entries.map((e) => e.sequence)).toEqual(first.entries.map((e) => e.sequence));
    expect(again.duplicate).toBe(true);
    expect(await mailboxSequences(probe, a.context.layout.partitions, bob.devices[0].address)).toHaveLength(1);
  });

  it("refuses a wrong key, no key, an account whose devices allow none, and an unknown account alike, storing nothing", async () => {
    const [bob, carol] = await accounts([1, 1]);
    const key = newAccessKey();
    await allowContacts(bob, 0, key);
    const client = sealedClient(a.url);
    const attempt = (accountId: string, accessKey: Uint8Array, to: TestAccount) =>
      codeOf(client.sendSealed({ accountId, accessKey, send: { messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor(to.devices) } }));
    const refusals = [
      await attempt(bob.accountId, newAccessKey(), bob),
      await attempt(bob.accountId, new Uint8Array(0), bob),
      await attempt(carol.accountId, key, carol),
      await attempt("nobody-here", key, bob), // the entries name bob: refused before any entry is looked at
    ];
    for (const r of refusals) {
      expect(r.code).toBe(Code.PermissionDenied);
      expect(r.message).toMatch(/^sealed send refused: the access key does not open account/);
    }
    expect(await mailboxSequences(probe, a.context.layout.partitions, bob.devices[0].address)).toEqual([]);
    expect(await mailboxSequences(probe, a.context.layout.partitions, carol.devices[0].address)).toEqual([]);
  });

  it("takes entries for the named account only, and every current device of it", async () => {
    const [alice, bob] = await accounts([1, 2]);
    const key = newAccessKey();
    await allowContacts(bob, 1, key);
    const client = sealedClient(a.url);
    const other = await codeOf(
      client.sendSealed({
        accountId: bob.accountId,
        accessKey: key,
        send: { messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor([...bob.devices, ...alice.devices]) },
      }),
    );
    expect(other.code).toBe(Code.InvalidArgument);
    expect(other.message).toContain("a sealed Send goes to the devices of account_id");
    const partial = await client.sendSealed({
      accountId: bob.accountId,
      accessKey: key,
      send: { messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor([bob.devices[0]]) },
    });
    expect(partial.outcome.case).toBe("mismatchedDevices");
    if (partial.outcome.case !== "mismatchedDevices") return;
    expect(partial.outcome.value.accounts.map((m) => [m.accountId, m.missingDeviceIds])).toEqual([[bob.accountId, [bob.devices[1].address.deviceId]]]);
    const badKey = await codeOf(
      client.sendSealed({ accountId: bob.accountId, accessKey: new Uint8Array(5), send: { messageId: newMessageId(), entries: entriesFor(bob.devices) } }),
    );
    expect(badKey).toMatchObject({ code: Code.InvalidArgument, message: "access_key must be 16 bytes (or empty), got 5" });
  });

  it("ANYONE takes sealed mail without a key; DISABLED again refuses it; the other instance follows each change", async () => {
    const [bob] = await accounts([1]);
    const send = () =>
      sealedClient(b.url).sendSealed({
        accountId: bob.accountId,
        send: { messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor(bob.devices) },
      });
    expect((await codeOf(send())).code).toBe(Code.PermissionDenied); // instance b has now read "nothing allowed"
    await bob.devices[0].directory.setSealedAccess({ mode: SealedAccessMode.ANYONE });
    await expect.poll(async () => (await send()).outcome.case, { timeout: 10_000 }).toBe("stored");
    await bob.devices[0].directory.setSealedAccess({ mode: SealedAccessMode.DISABLED });
    await expect.poll(async () => (await codeOf(send())).code, { timeout: 10_000 }).toBe(Code.PermissionDenied);
  });

  it("answers the same on the native path (binary, HTTP/2) and through connect-node (JSON, HTTP/1.1), and over gRPC", async () => {
    const [bob] = await accounts([1]);
    const key = newAccessKey();
    await allowContacts(bob, 0, key);
    const clients = [
      sealedClient(a.url),
      createClient(DeliveryService, createConnectTransport({ baseUrl: a.url, httpVersion: "1.1", useBinaryFormat: false })),
      createClient(DeliveryService, plainTransport(a.url, "grpc")),
    ];
    for (const client of clients) {
      const req = { accountId: bob.accountId, accessKey: key, send: { messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor(bob.devices) } };
      expect((await client.sendSealed(req)).outcome.case).toBe("stored");
      expect(await codeOf(client.sendSealed({ ...req, accessKey: newAccessKey() }))).toMatchObject({ code: Code.PermissionDenied });
    }
    expect(await mailboxSequences(probe, a.context.layout.partitions, bob.devices[0].address)).toHaveLength(3);
  });

  it("SetSealedAccess checks its fields and needs a token", async () => {
    const [bob] = await accounts([1]);
    const dir = bob.devices[0].directory;
    expect(await codeOf(dir.setSealedAccess({ mode: SealedAccessMode.UNSPECIFIED }))).toMatchObject({ code: Code.InvalidArgument });
    expect(await codeOf(dir.setSealedAccess({ mode: SealedAccessMode.CONTACTS, accessKeySha256: new Uint8Array(16) }))).toMatchObject({
      code: Code.InvalidArgument,
      message: "access_key_sha256 must be 32 bytes (SHA-256) for CONTACTS, got 16",
    });
    expect(await codeOf(dir.setSealedAccess({ mode: SealedAccessMode.ANYONE, accessKeySha256: new Uint8Array(32) }))).toMatchObject({
      code: Code.InvalidArgument,
    });
    const { DirectoryService } = await import("@sealpost/gen/sealpost/directory/v1/directory_service_pb.js");
    const anonymous = createClient(DirectoryService, plainTransport(a.url));
    expect((await codeOf(anonymous.setSealedAccess({ mode: SealedAccessMode.ANYONE }))).code).toBe(Code.Unauthenticated);
  });
});

describe("SendSealed limits", () => {
  let limited: RunningServer;
  beforeAll(async () => {
    limited = await startTestServer(nats.url, {}, { delivery: { limits: { sealedSendsPerAddressPerMinute: 5, sealedSendsPerAccountPerMinute: 3 } } });
  });
  afterAll(async () => limited?.close());

  it("limits a caller address (refused attempts count) and an account (only accepted keys count)", async () => {
    const [bob, carol] = await accounts([1, 1]);
    const key = newAccessKey();
    await allowContacts(bob, 0, key);
    await allowContacts(carol, 0, key);
    const client = sealedClient(limited.url);
    const send = (to: TestAccount, accessKey: Uint8Array) =>
      client
        .sendSealed({ accountId: to.accountId, accessKey, send: { messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor(to.devices) } })
        .then(
          () => "ok" as const,
          (e: unknown) => ConnectError.from(e).code,
        );
    // Wrong keys for bob do not use up bob's own allowance...
    expect(await send(bob, newAccessKey())).toBe(Code.PermissionDenied);
    expect(await send(bob, newAccessKey())).toBe(Code.PermissionDenied);
    // ...but accepted ones do: 3 per minute for bob.
    expect([await send(bob, key), await send(bob, key), await send(carol, key)]).toEqual(["ok", "ok", "ok"]);
    // The address has had its 5; everything from it is refused now, whatever the key.
    const refused = await codeOf(
      client.sendSealed({
        accountId: carol.accountId,
        accessKey: key,
        send: { messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor(carol.devices) },
      }),
    );
    expect(refused.code).toBe(Code.ResourceExhausted);
    expect(refused.message).toMatch(/^sealed send rate limit exceeded for this address: sealed_sends_per_address_per_minute is 5/);
  });

  it("limits one account's sealed mail however many addresses send it", async () => {
    const other = await startTestServer(nats.url, {}, { delivery: { limits: { sealedSendsPerAccountPerMinute: 2 } } });
    try {
      const [bob] = await accounts([1]);
      const key = newAccessKey();
      await allowContacts(bob, 0, key);
      const send = () =>
        sealedClient(other.url).sendSealed({
          accountId: bob.accountId,
          accessKey: key,
          send: { messageId: newMessageId(), sharedBody: bytes("x"), entries: entriesFor(bob.devices) },
        });
      await send();
      await send();
      const r = await codeOf(send());
      expect(r.code).toBe(Code.ResourceExhausted);
      expect(r.message).toContain(`sealed send rate limit exceeded for account ${bob.accountId}: sealed_sends_per_account_per_minute is 2`);
    } finally {
      await other.close();
    }
  });
});
