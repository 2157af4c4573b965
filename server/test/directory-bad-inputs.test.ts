/**
 * Bad inputs to the directory: wrong key lengths, bad signatures, unknown accounts and
 * devices, taken account ids, missing, expired, forged and foreign tokens, replayed or
 * wrongly signed auth challenges, oversize batches, duplicate and excess one-time prekeys,
 * rate limits. Each gets its precise code and message and leaves stored state unchanged.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { OneTimePrekeySchema, SignedPrekeySchema } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import {
  createTestAccount,
  generateTestPrekeys,
  plainTransport,
  prekeyMessages,
  startTestNats,
  startTestServer,
  type TestAccount,
  type TestNats,
} from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";
import { authSignedBytes, createFirstDeviceList, generateDeviceKeys } from "@sealpost/client/directory";
import { directoryState, expectConnectError } from "./directory-helpers.js";

let nats: TestNats;
let server: RunningServer;
let future: RunningServer;
let limited: RunningServer;

beforeAll(async () => {
  nats = await startTestNats();
  [server, future, limited] = await Promise.all([
    startTestServer(nats.url),
    // Same token secret, clock two hours ahead: tokens from `server` are expired here.
    startTestServer(nats.url, {}, { now: () => Date.now() + 2 * 3600_000 }),
    startTestServer(nats.url, {}, { directory: { limits: { claimsPerMinute: 2, uploadsPerMinute: 2, challengesPerMinute: 3 } } }),
  ]);
});
afterAll(async () => {
  await Promise.all([server?.close(), future?.close(), limited?.close()]);
  await nats?.stop();
});

const open = () => createClient(DirectoryService, plainTransport(server.url));
const withToken = (url: string, token: string) => {
  const i: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req));
  return createClient(DirectoryService, plainTransport(url, "connect", [i]));
};

async function unchanged(acct: TestAccount, code: Code, message: string | RegExp, call: () => Promise<unknown>) {
  const before = await directoryState(server.url, acct);
  await expectConnectError(call(), code, message);
  expect(await directoryState(server.url, acct)).toEqual(before);
}

describe("CreateAccount", () => {
  it("rejects a taken account id without touching the existing account", async () => {
    const alice = await createTestAccount(server.url, "bad-taken", { oneTimePrekeys: 4 });
    const keys = await generateDeviceKeys(alice.provider, "impostor");
    const deviceList = await createFirstDeviceList(alice.provider, { accountId: "bad-taken", device: keys, nowMs: Date.now() });
    const pre = prekeyMessages(await generateTestPrekeys(alice.provider, keys, 5, 900));
    await unchanged(alice, Code.AlreadyExists, "account bad-taken already exists", () => open().createAccount({ deviceList, ...pre }));
  });

  it("rejects malformed registrations and stores nothing", async () => {
    const p = (await createTestAccount(server.url, "bad-helper")).provider;
    const keys = await generateDeviceKeys(p, "d");
    const pk = prekeyMessages(await generateTestPrekeys(p, keys, 2));
    const list = (accountId: string, k = keys) => createFirstDeviceList(p, { accountId, device: k, nowMs: Date.now() });
    const cases: [string, Code, string, Parameters<ReturnType<typeof open>["createAccount"]>[0]][] = [
      [
        "bad-id",
        Code.InvalidArgument,
        'device list account_id "Bad.Id" is invalid: 3 to 64 characters of [a-z0-9_-], starting with a letter or digit',
        { deviceList: await list("Bad.Id"), ...pk },
      ],
      [
        "short-key",
        Code.InvalidArgument,
        "device 1: signing_key must be 32 bytes, got 31",
        { deviceList: await list("bad-short", { ...keys, signingKey: keys.signingKey.slice(1) }), ...pk },
      ],
      [
        "kem-len",
        Code.InvalidArgument,
        "kem_prekey.public_key must be 1184 bytes (ML-KEM-768), got 1183",
        { deviceList: await list("bad-kem"), ...pk, kemPrekey: { ...pk.kemPrekey, publicKey: pk.kemPrekey.publicKey.slice(1) } },
      ],
      [
        "spk-sig",
        Code.InvalidArgument,
        "signed_prekey.signature does not verify under device 1's signing key",
        { deviceList: await list("bad-spk"), ...pk, signedPrekey: create(SignedPrekeySchema, { ...pk.signedPrekey, keyId: 2 }) },
      ],
      ["no-kem", Code.InvalidArgument, "kem_prekey is required", { deviceList: await list("bad-nokem"), signedPrekey: pk.signedPrekey }],
      [
        "batch",
        Code.ResourceExhausted,
        "at most 100 one-time prekeys per request, got 101",
        {
          deviceList: await list("bad-batch"),
          ...pk,
          oneTimePrekeys: Array.from({ length: 101 }, (_, i) => create(OneTimePrekeySchema, { keyId: i + 1, publicKey: new Uint8Array(32) })),
        },
      ],
      [
        "self-sig",
        Code.PermissionDenied,
        "device list signature by device 1 does not verify",
        { deviceList: { ...(await list("bad-selfsig")), signature: new Uint8Array(64) }, ...pk },
      ],
    ];
    for (const [name, code, message, req] of cases) {
      await expectConnectError(open().createAccount(req), code, message);
      const id =
        name === "bad-id"
          ? "bad-id"
          : (
              {
                "short-key": "bad-short",
                "kem-len": "bad-kem",
                "spk-sig": "bad-spk",
                "no-kem": "bad-nokem",
                batch: "bad-batch",
                "self-sig": "bad-selfsig",
              } as Record<string, string>
            )[name];
      await expectConnectError(open().getDeviceList({ accountId: id }), Code.NotFound, `account ${id} not found`);
    }
  });

  it("refuses an account whose signing key is of small order: its universal signature proves nothing", async () => {
    // With the identity point as signing key, R = [r]B, S = r verifies any message under the
    // cofactorless equation alone (ed25519-rule.json's "small-order key" case): anyone could
    // sign for such a device. OpenSSL accepts it; the protocol's rule does not.
    const rule = JSON.parse(readFileSync(new URL("../../conformance/vectors/ed25519-rule.json", import.meta.url), "utf8"));
    const smallOrder = rule.cases.find((c: { name: string }) => c.name === "small-order key");
    const forged = new Uint8Array(Buffer.from(smallOrder.signature, "hex"));
    const p = (await createTestAccount(server.url, "bad-forger-helper")).provider;
    const keys = { ...(await generateDeviceKeys(p, "forger")), signingKey: new Uint8Array(Buffer.from(smallOrder.public_key, "hex")), dhKeySignature: forged };
    const deviceList = { ...(await createFirstDeviceList(p, { accountId: "bad-forger", device: keys, nowMs: Date.now() })), signature: forged };
    const pk = prekeyMessages(await generateTestPrekeys(p, keys, 2));
    pk.signedPrekey = create(SignedPrekeySchema, { ...pk.signedPrekey, signature: forged });
    pk.kemPrekey = { ...pk.kemPrekey, signature: forged };
    await expectConnectError(
      open().createAccount({ deviceList, ...pk }),
      Code.PermissionDenied,
      "device 1: dh_key_signature does not verify under its signing_key",
    );
    await expectConnectError(open().getDeviceList({ accountId: "bad-forger" }), Code.NotFound, "account bad-forger not found");
  });
});

describe("authentication", () => {
  it("rejects unknown accounts and devices, bad signatures and reused challenges", async () => {
    const alice = await createTestAccount(server.url, "auth-alice");
    const d = alice.devices[0];
    await expectConnectError(open().getAuthChallenge({ device: { accountId: "auth-nobody", deviceId: 1 } }), Code.NotFound, "account auth-nobody not found");
    await expectConnectError(
      open().getAuthChallenge({ device: { accountId: "auth-alice", deviceId: 9 } }),
      Code.NotFound,
      "device auth-alice/9 is not in the account's current device list",
    );
    await expectConnectError(
      open().getAuthChallenge({ device: { accountId: "auth-alice", deviceId: 0 } }),
      Code.InvalidArgument,
      "device.device_id 0 is invalid: must be 1 to 2^31-1",
    );

    const { nonce } = await open().getAuthChallenge({ device: d.address });
    const good = await alice.provider.ed25519Sign(d.keys.signingSeed, authSignedBytes("auth-alice", 1, nonce));
    const other = await alice.provider.ed25519Sign((await generateDeviceKeys(alice.provider, "x")).signingSeed, authSignedBytes("auth-alice", 1, nonce));
    await expectConnectError(
      open().authenticate({ device: d.address, nonce, signature: other }),
      Code.Unauthenticated,
      "signature over the challenge does not verify under device auth-alice/1's signing key",
    );
    await expectConnectError(
      open().authenticate({ device: d.address, nonce, signature: good.slice(1) }),
      Code.InvalidArgument,
      "signature must be 64 bytes, got 63",
    );
    // The failed attempts did not consume the challenge; the good one does, exactly once.
    expect((await open().authenticate({ device: d.address, nonce, signature: good })).token).toMatch(/^v1\.auth-alice\.1\./);
    await expectConnectError(
      open().authenticate({ device: d.address, nonce, signature: good }),
      Code.Unauthenticated,
      "challenge is unknown or already used; request a new one",
    );
    // A challenge for device 1 does not authenticate another address.
    await expectConnectError(
      open().authenticate({ device: d.address, nonce: new Uint8Array(32), signature: good }),
      Code.Unauthenticated,
      "challenge is unknown or already used; request a new one",
    );
    // A nonce with its expiry (bytes 10-15) or random part changed is not one the server issued.
    const fresh = (await open().getAuthChallenge({ device: d.address })).nonce;
    for (const i of [0, 12, 31]) {
      const forged = fresh.slice();
      forged[i] ^= 1;
      const sig = await alice.provider.ed25519Sign(d.keys.signingSeed, authSignedBytes("auth-alice", 1, forged));
      await expectConnectError(
        open().authenticate({ device: d.address, nonce: forged, signature: sig }),
        Code.Unauthenticated,
        "challenge is unknown or already used; request a new one",
      );
    }
    // Stateless challenges stay single-use across instances: two racing Authenticates, one token.
    const sig = await alice.provider.ed25519Sign(d.keys.signingSeed, authSignedBytes("auth-alice", 1, fresh));
    const raced = await Promise.allSettled(
      [server, limited, server, limited].map((s) =>
        createClient(DirectoryService, plainTransport(s.url)).authenticate({ device: d.address, nonce: fresh, signature: sig }),
      ),
    );
    expect(raced.filter((r) => r.status === "fulfilled")).toHaveLength(1);
  });

  it("rejects missing, malformed, forged and expired tokens", async () => {
    const alice = await createTestAccount(server.url, "tok-alice");
    await expectConnectError(open().getPrekeyCount({}), Code.Unauthenticated, "missing authorization header (expected 'Bearer <token>' from Authenticate)");
    await expectConnectError(withToken(server.url, "nope").getPrekeyCount({}), Code.Unauthenticated, "malformed token");
    const forged = alice.devices[0].token.replace("tok-alice.1.", "tok-alice.2.");
    await expectConnectError(withToken(server.url, forged).getPrekeyCount({}), Code.Unauthenticated, "token signature is invalid");
    await unchanged(alice, Code.Unauthenticated, "token expired; authenticate again", () =>
      withToken(future.url, alice.devices[0].token).uploadPrekeys({
        oneTimePrekeys: [create(OneTimePrekeySchema, { keyId: 77, publicKey: new Uint8Array(32) })],
      }),
    );
  });
});

describe("UploadPrekeys and ClaimKeyBundles", () => {
  it("rejects bad prekeys, duplicates and excess one-time prekeys without storing any", async () => {
    const alice = await createTestAccount(server.url, "up-alice", { oneTimePrekeys: 10 });
    const d = alice.devices[0];
    const fresh = prekeyMessages(await generateTestPrekeys(alice.provider, d.keys, 100, 100));
    const otp = (keyId: number, len = 32) => create(OneTimePrekeySchema, { keyId, publicKey: new Uint8Array(len).fill(1) });
    await unchanged(alice, Code.InvalidArgument, "nothing to upload: set signed_prekey, kem_prekey and/or one_time_prekeys", () =>
      d.directory.uploadPrekeys({}),
    );
    await unchanged(alice, Code.InvalidArgument, "one_time_prekeys[1].public_key must be 32 bytes (X25519), got 33", () =>
      d.directory.uploadPrekeys({ oneTimePrekeys: [otp(50), otp(51, 33)] }),
    );
    await unchanged(alice, Code.InvalidArgument, "signed_prekey.public_key must be 32 bytes (X25519), got 31", () =>
      d.directory.uploadPrekeys({ signedPrekey: { ...fresh.signedPrekey, publicKey: fresh.signedPrekey.publicKey.slice(1) }, oneTimePrekeys: [otp(50)] }),
    );
    await unchanged(alice, Code.InvalidArgument, "kem_prekey.signature does not verify under device 1's signing key", () =>
      d.directory.uploadPrekeys({ kemPrekey: { ...fresh.kemPrekey, keyId: 9 }, oneTimePrekeys: [otp(50)] }),
    );
    await unchanged(alice, Code.AlreadyExists, "one-time prekey id 3 is already stored", () =>
      d.directory.uploadPrekeys({ oneTimePrekeys: [otp(50), otp(3)] }),
    );
    await unchanged(alice, Code.InvalidArgument, "one_time_prekeys[1].key_id 50 appears twice in the batch", () =>
      d.directory.uploadPrekeys({ oneTimePrekeys: [otp(50), otp(50)] }),
    );
    await unchanged(alice, Code.ResourceExhausted, "at most 100 one-time prekeys per request, got 101", () =>
      d.directory.uploadPrekeys({ oneTimePrekeys: [...fresh.oneTimePrekeys, otp(5000)] }),
    );
    // Fill to 1000, then one more is refused.
    for (let i = 0; i < 10; i++) {
      await d.directory.uploadPrekeys({ oneTimePrekeys: Array.from({ length: i === 9 ? 90 : 100 }, (_, j) => otp(10_000 + i * 100 + j)) });
    }
    expect((await d.directory.getPrekeyCount({})).oneTimePrekeyCount).toBe(1000);
    await unchanged(alice, Code.ResourceExhausted, "device has 1000 one-time prekeys stored; 1 more would exceed the maximum of 1000", () =>
      d.directory.uploadPrekeys({ oneTimePrekeys: [otp(99_999)] }),
    );
  });

  it("rejects claims for unknown accounts and devices and bad device ids without consuming keys", async () => {
    const alice = await createTestAccount(server.url, "cl-alice", { oneTimePrekeys: 3 });
    const bob = await createTestAccount(server.url, "cl-bob");
    const c = bob.devices[0].directory;
    await expectConnectError(c.claimKeyBundles({ accountId: "cl-nobody" }), Code.NotFound, "account cl-nobody not found");
    await unchanged(alice, Code.NotFound, "device cl-alice/7 is not in the account's current device list", () =>
      c.claimKeyBundles({ accountId: "cl-alice", deviceIds: [1, 7] }),
    );
    await unchanged(alice, Code.InvalidArgument, "device_ids lists device 1 twice", () => c.claimKeyBundles({ accountId: "cl-alice", deviceIds: [1, 1] }));
    await unchanged(alice, Code.InvalidArgument, 'account_id "CL" is invalid: 3 to 64 characters of [a-z0-9_-], starting with a letter or digit', () =>
      c.claimKeyBundles({ accountId: "CL" }),
    );
  });

  it("rate-limits claims and uploads per device, challenges per caller address", async () => {
    const alice = await createTestAccount(limited.url, "rl-alice", { oneTimePrekeys: 5 });
    const bobOnLimited = await createTestAccount(server.url, "rl-bob");
    const bob = withToken(limited.url, bobOnLimited.devices[0].token);
    await bob.claimKeyBundles({ accountId: "rl-alice" });
    await bob.claimKeyBundles({ accountId: "rl-alice" });
    await unchanged(alice, Code.ResourceExhausted, /^key bundle claim rate limit exceeded for rl-bob\/1; retry in \d+ s$/, () =>
      bob.claimKeyBundles({ accountId: "rl-alice" }),
    );
    const up = withToken(limited.url, alice.devices[0].token);
    const otp = (keyId: number) => create(OneTimePrekeySchema, { keyId, publicKey: new Uint8Array(32) });
    // createTestAccount made no upload for the first device (CreateAccount carries its keys).
    await up.uploadPrekeys({ oneTimePrekeys: [otp(100)] });
    await up.uploadPrekeys({ oneTimePrekeys: [otp(101)] });
    await unchanged(alice, Code.ResourceExhausted, /^prekey upload rate limit exceeded for rl-alice\/1; retry in \d+ s$/, () =>
      up.uploadPrekeys({ oneTimePrekeys: [otp(102)] }),
    );
    // Challenges: 3 per minute per caller address. A stranger at 127.0.0.2 asking for Alice's
    // challenges uses up only its own budget; Alice (at 127.0.0.1) still authenticates.
    const stranger = createClient(
      DirectoryService,
      createConnectTransport({ baseUrl: limited.url, httpVersion: "1.1", useBinaryFormat: true, nodeOptions: { localAddress: "127.0.0.2" } }),
    );
    for (let i = 0; i < 3; i++) await stranger.getAuthChallenge({ device: alice.devices[0].address });
    await expectConnectError(
      stranger.getAuthChallenge({ device: alice.devices[0].address }),
      Code.ResourceExhausted,
      /^auth challenge rate limit exceeded for 127\.0\.0\.2; retry in \d+ s$/,
    );
    await expectConnectError(
      stranger.getAuthChallenge({ device: bobOnLimited.devices[0].address }),
      Code.ResourceExhausted,
      /^auth challenge rate limit exceeded for 127\.0\.0\.2;/,
    );
    const lim = createClient(DirectoryService, plainTransport(limited.url));
    // createTestAccount used one challenge of 127.0.0.1's on this instance; two more fit, the fourth does not.
    await lim.getAuthChallenge({ device: alice.devices[0].address });
    await lim.getAuthChallenge({ device: alice.devices[0].address });
    await expectConnectError(
      lim.getAuthChallenge({ device: alice.devices[0].address }),
      Code.ResourceExhausted,
      /^auth challenge rate limit exceeded for 127\.0\.0\.1; retry in \d+ s$/,
    );
  });
});

describe("GetDeviceList", () => {
  it("rejects an unknown account and a malformed id", async () => {
    await expectConnectError(open().getDeviceList({ accountId: "gdl-nobody" }), Code.NotFound, "account gdl-nobody not found");
    await expectConnectError(
      open().getDeviceList({ accountId: "a.b" }),
      Code.InvalidArgument,
      'account_id "a.b" is invalid: 3 to 64 characters of [a-z0-9_-], starting with a letter or digit',
    );
  });
});
