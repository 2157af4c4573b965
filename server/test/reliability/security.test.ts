/**
 * Security across two server instances: mailbox isolation (read, ack, delete), device lists
 * of other accounts, forged / expired / replayed tokens and challenges, immediate lockout of
 * a revoked device, rate limits under a flood, and a scan of the JetStream store and every
 * server log line for plaintext, private keys and tokens after real end-to-end encrypted
 * traffic (the client's SessionCipher).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { SendEntrySchema } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { DeviceAddressSchema } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import { KeyBundleSchema } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { ContentSchema, TextSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  authenticateDevice,
  createTestAccount,
  deliveryClient,
  plainTransport,
  reliabilityProfile,
  startTestServer,
  type TestAccount,
  type TestDevice,
} from "@sealpost/test-support";
import { startEmbeddedNats, type EmbeddedNats } from "../../src/nats/embedded-server.js";
import { createLogger } from "../../src/logger.js";
import type { RunningServer } from "../../src/server.js";
import { TokenSigner } from "../../src/auth/tokens.js";
import { createNodeProvider } from "@sealpost/client/crypto";
import { authSignedBytes, generateDeviceKeys, linkDeviceChange, parseDeviceList, revokeDeviceChange } from "@sealpost/client/directory";
import {
  addressKey,
  createDeviceIdentity,
  createMemoryStores,
  generatePrekeyBatch,
  SessionCipher,
  toDeviceIdentity,
  type ProtocolStores,
} from "@sealpost/client/protocol";

const TOKEN_SECRET = "security-secret-security-secret-sec!";
const profile = reliabilityProfile();
const provider = createNodeProvider();

let natsDir: string;
let nats: EmbeddedNats;
let a: RunningServer;
let b: RunningServer;
let clock = Date.now();
/** Instance b's limits (a keeps the defaults); the flood test derives its expectations from them. */
const B_SENDS_PER_MINUTE = 60;
const B_CHALLENGES_PER_MINUTE = 30;
const logLines: string[] = [];

beforeAll(async () => {
  natsDir = await mkdtemp(join(tmpdir(), "sealpost-security-"));
  nats = await startEmbeddedNats({ dataDir: natsDir });
  // Debug level: every call is logged, so the scan sees the most the server ever writes.
  const log = createLogger("debug", (line) => logLines.push(line));
  a = await startTestServer(nats.url, { tokenSecret: TOKEN_SECRET }, { log: log.child({ instance: "a" }), now: () => clock });
  b = await startTestServer(
    nats.url,
    { tokenSecret: TOKEN_SECRET },
    {
      log: log.child({ instance: "b" }),
      now: () => clock,
      delivery: { limits: { sendsPerMinute: B_SENDS_PER_MINUTE } },
      directory: { limits: { challengesPerMinute: B_CHALLENGES_PER_MINUTE } },
    },
  );
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await nats?.stop();
  await rm(natsDir, { recursive: true, force: true });
});

let seq = 0;
const account = (tag: string, devices = 1) => createTestAccount(a.url, `sec-${tag}-${++seq}`, { devices, oneTimePrekeys: 2 });
const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return "ok";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
};
const entry = (to: TestDevice, bytes: Uint8Array = randomBytes(16)) =>
  create(SendEntrySchema, { device: create(DeviceAddressSchema, to.address), entry: bytes });

async function sendTo(from: TestDevice, to: TestDevice, url = a.url): Promise<bigint> {
  const res = await deliveryClient(from, url).send({ messageId: randomBytes(16), sharedBody: randomBytes(32), entries: [entry(to)] });
  if (res.outcome.case !== "stored") throw new Error(`not stored: ${res.outcome.case}`);
  return res.outcome.value.entries[0].sequence;
}

/** Every message in a device's mailbox, read to Drained on a fresh stream (no acks). */
async function mailbox(device: TestDevice, url = b.url): Promise<bigint[]> {
  const abort = new AbortController();
  const out: bigint[] = [];
  const timer = setTimeout(() => abort.abort(), 15_000);
  try {
    for await (const ev of deliveryClient(device, url).receive({}, { signal: abort.signal })) {
      if (ev.event.case === "drained") break;
      if (ev.event.case === "message") out.push(ev.event.value.sequence);
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return out;
}

describe("mailbox isolation", () => {
  it("a device cannot read, ack or delete another device's mail (other account or own account)", async () => {
    const [alice, bob, mallory] = await Promise.all([account("alice"), account("bob", 2), account("mallory")]);
    const [bob1, bob2] = bob.devices;
    const seqs: bigint[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await deliveryClient(alice.devices[0], a.url).send({
        messageId: randomBytes(16),
        sharedBody: randomBytes(32),
        entries: [entry(bob1), entry(bob2)],
      });
      if (res.outcome.case !== "stored") throw new Error(`not stored: ${res.outcome.case}`);
      seqs.push(res.outcome.value.entries[0].sequence);
    }
    const bob2Mail = await mailbox(bob2);
    // Mallory's stream is hers alone: none of Bob's mail shows up.
    expect(await mailbox(mallory.devices[0])).toEqual([]);
    // Mallory (no mail of her own) acking Bob's sequences, on both instances: ignored, and
    // answered like already acked sequences (nothing deleted, nothing revealed).
    for (const url of [a.url, b.url]) {
      expect((await deliveryClient(mallory.devices[0], url).ack({ sequences: seqs })).deleted).toBe(0);
      for (const q of seqs) expect((await deliveryClient(mallory.devices[0], url).ack({ sequences: [q] })).deleted).toBe(0);
    }
    // Bob's other device acking device 1's sequences can at most delete its own mail (a
    // sequence of its own stream may coincide); device 1's mailbox is untouched.
    for (const url of [a.url, b.url]) await codeOf(deliveryClient(bob2, url).ack({ sequences: seqs }));
    expect(await mailbox(bob1)).toEqual(seqs);
    expect(bob2Mail).toHaveLength(seqs.length);
    // Bob's own device acks fine.
    const ack = await deliveryClient(bob1, a.url).ack({ sequences: seqs });
    expect(ack.deleted).toBe(seqs.length);
    expect(await mailbox(bob1)).toEqual([]);
  });

  it("a device cannot change another account's device list", async () => {
    const [alice, mallory] = await Promise.all([account("alice2"), account("mallory2")]);
    const before = (await alice.devices[0].directory.getDeviceList({ accountId: alice.accountId })).deviceList!;
    const m = mallory.devices[0];
    const evil = await generateDeviceKeys(provider, "ghost");
    // 1. Alice's next version, signed by Mallory's key under Alice's device id, sent with Mallory's token.
    const forged = await linkDeviceChange(provider, before, { deviceId: alice.devices[0].address.deviceId, signingSeed: m.keys.signingSeed }, evil, clock);
    // 2. A correct-looking revoke of Alice's device, signed by Mallory.
    const revoke = await revokeDeviceChange(
      provider,
      before,
      { deviceId: alice.devices[0].address.deviceId, signingSeed: m.keys.signingSeed },
      alice.devices[0].address.deviceId,
      clock,
    );
    for (const url of [a.url, b.url]) {
      const dir = createClient(DirectoryService, m.transport);
      void url;
      expect(await codeOf(dir.linkDevice({ deviceList: forged.deviceList }))).not.toBe("ok");
      expect(await codeOf(dir.revokeDevice({ deviceList: revoke }))).not.toBe("ok");
    }
    // 3. With Alice's own token but a list signed by a key that is not in it.
    expect(await codeOf(alice.devices[0].directory.linkDevice({ deviceList: forged.deviceList }))).toBe("PermissionDenied");
    const after = (await alice.devices[0].directory.getDeviceList({ accountId: alice.accountId })).deviceList!;
    expect(parseDeviceList(after).version).toBe(parseDeviceList(before).version);
    expect(Buffer.from(after.deviceList).equals(Buffer.from(before.deviceList))).toBe(true);
  });
});

describe("tokens and challenges", () => {
  it("forged, tampered, expired and malformed tokens are rejected on every instance", async () => {
    const [alice, mallory] = await Promise.all([account("tok-a"), account("tok-m")]);
    const real = mallory.devices[0].token;
    const [, acc, dev, exp, mac] = real.split(".");
    const other = new TokenSigner(new TextEncoder().encode("another-secret-another-secret-another!"));
    const expired = new TokenSigner(new TextEncoder().encode(TOKEN_SECRET), () => clock - 2 * 3600_000).issue(alice.accountId, 1, 3600_000).token;
    const bad = [
      `v1.${alice.accountId}.1.${exp}.${mac}`, // Mallory's MAC on Alice's claims
      `v1.${acc}.${Number(dev) + 1}.${exp}.${mac}`, // another device id
      `v1.${acc}.${dev}.${Number(exp) + 3600_000}.${mac}`, // extended expiry
      other.issue(alice.accountId, 1, 3600_000).token, // signed with a foreign secret
      expired,
      `${real}x`,
      "v1.a.b.c",
      "",
      "x".repeat(600),
    ];
    for (const url of [a.url, b.url]) {
      for (const token of bad) {
        const fake = { ...mallory.devices[0], token } as TestDevice;
        expect(await codeOf(deliveryClient(fake, url).ack({ sequences: [1n] })), token.slice(0, 40)).toBe("Unauthenticated");
        expect(await codeOf(deliveryClient(fake, url).receive({})[Symbol.asyncIterator]().next())).toBe("Unauthenticated");
      }
    }
  });

  it("challenges: forged, signed by the wrong key, replayed, and expired ones are rejected", async () => {
    const [alice, mallory] = await Promise.all([account("ch-a"), account("ch-m")]);
    const open = createClient(DirectoryService, plainTransport(b.url));
    const device = alice.devices[0].address;
    const sign = (seed: Uint8Array, nonce: Uint8Array) => provider.ed25519Sign(seed, authSignedBytes(device.accountId, device.deviceId, nonce));
    // Never issued.
    const madeUp = randomBytes(32);
    expect(await codeOf(open.authenticate({ device, nonce: madeUp, signature: await sign(alice.devices[0].keys.signingSeed, madeUp) }))).toBe(
      "Unauthenticated",
    );
    // Signed by Mallory's key for Alice's device.
    const c1 = await open.getAuthChallenge({ device });
    expect(await codeOf(open.authenticate({ device, nonce: c1.nonce, signature: await sign(mallory.devices[0].keys.signingSeed, c1.nonce) }))).toBe(
      "Unauthenticated",
    );
    // The real signature works once (on instance b), a replay fails on both instances.
    const sig = await sign(alice.devices[0].keys.signingSeed, c1.nonce);
    expect(await codeOf(open.authenticate({ device, nonce: c1.nonce, signature: sig }))).toBe("ok");
    expect(await codeOf(open.authenticate({ device, nonce: c1.nonce, signature: sig }))).toBe("Unauthenticated");
    expect(await codeOf(createClient(DirectoryService, plainTransport(a.url)).authenticate({ device, nonce: c1.nonce, signature: sig }))).toBe(
      "Unauthenticated",
    );
    // A nonce issued for Alice cannot authenticate Mallory.
    const c2 = await open.getAuthChallenge({ device });
    const mAddr = mallory.devices[0].address;
    const mSig = await provider.ed25519Sign(mallory.devices[0].keys.signingSeed, authSignedBytes(mAddr.accountId, mAddr.deviceId, c2.nonce));
    expect(await codeOf(open.authenticate({ device: mAddr, nonce: c2.nonce, signature: mSig }))).toBe("Unauthenticated");
    // Expired: the servers' clock moves past the challenge's 5 minutes.
    const c3 = await open.getAuthChallenge({ device });
    clock += 6 * 60_000;
    try {
      expect(await codeOf(open.authenticate({ device, nonce: c3.nonce, signature: await sign(alice.devices[0].keys.signingSeed, c3.nonce) }))).toBe(
        "Unauthenticated",
      );
    } finally {
      clock -= 6 * 60_000;
    }
  });
});

describe("revocation", () => {
  it("a revoked device is locked out at once, on every instance, with its open stream ended", async () => {
    const [bob, alice] = await Promise.all([account("rev-b", 2), account("rev-a")]);
    const [keep, gone] = bob.devices;
    // gone holds a stream on b; the revocation is committed through a.
    const abort = new AbortController();
    const events: string[] = [];
    const streamEnd = (async () => {
      try {
        for await (const ev of deliveryClient(gone, b.url).receive({}, { signal: abort.signal })) events.push(ev.event.case ?? "");
        return "ended";
      } catch (err) {
        return Code[ConnectError.from(err).code];
      }
    })();
    while (!events.includes("drained")) await new Promise((r) => setTimeout(r, 20));
    await sendTo(alice.devices[0], keep, a.url).catch(() => 0n); // mismatch (gone missing) or stored: either is fine
    const revoke = await revokeDeviceChange(
      provider,
      bob.deviceList,
      { deviceId: keep.address.deviceId, signingSeed: keep.keys.signingSeed },
      gone.address.deviceId,
      clock,
    );
    await keep.directory.revokeDevice({ deviceList: revoke });
    // Immediately, no waiting: every authenticated call of the revoked device fails everywhere.
    for (const url of [a.url, b.url]) {
      expect(await codeOf(deliveryClient(gone, url).ack({ sequences: [1n] }))).toBe("Unauthenticated");
      expect(await codeOf(deliveryClient(gone, url).send({ messageId: randomBytes(16), sharedBody: randomBytes(8), entries: [entry(alice.devices[0])] }))).toBe(
        "Unauthenticated",
      );
      expect(await codeOf(deliveryClient(gone, url).receive({})[Symbol.asyncIterator]().next())).toBe("Unauthenticated");
    }
    expect(await codeOf(gone.directory.getPrekeyCount({}))).toBe("Unauthenticated");
    expect(await codeOf(gone.reauthenticate())).not.toBe("ok");
    expect(await Promise.race([streamEnd, new Promise((r) => setTimeout(() => r("still open"), 15_000))])).toBe("Unauthenticated");
    abort.abort();
  });
});

describe("rate limits under a flood", () => {
  const n = profile.floodRequests;
  const count = (codes: string[]) => codes.reduce<Record<string, number>>((m, c) => ((m[c] = (m[c] ?? 0) + 1), m), {});
  // A fresh bucket holds exactly `limit` tokens and the servers' clock stands still during the
  // flood (no refill): exactly `limit` calls succeed, every other one is RESOURCE_EXHAUSTED.
  // Every call is answered with one of the two (no reset, no INTERNAL or UNAVAILABLE).
  const expectLimited = (codes: Record<string, number>, limit: number) => {
    expect(codes).toEqual({ ok: limit, ResourceExhausted: n - limit });
  };

  it("sends beyond the per-device limit get RESOURCE_EXHAUSTED; another device still sends and the recipient reads it all", async () => {
    const [flooder, victim, bystander] = await Promise.all([account("fl-f"), account("fl-v"), account("fl-b")]);
    expect(n).toBeGreaterThan(B_SENDS_PER_MINUTE + 1); // the flood must exceed the limit it tests
    // Sends through b (B_SENDS_PER_MINUTE per device there).
    const s = count(await Promise.all(Array.from({ length: n }, () => codeOf(sendTo(flooder.devices[0], victim.devices[0], b.url)))));
    expectLimited(s, B_SENDS_PER_MINUTE);
    // The flood hit only the flooder: another device sends through b, the victim reads.
    await sendTo(bystander.devices[0], victim.devices[0], b.url);
    expect((await mailbox(victim.devices[0], a.url)).length).toBe((s.ok ?? 0) + 1);
  });

  it("auth challenges beyond the per-address limit are refused to that caller only; the device itself still authenticates", async () => {
    const [victim, bystander] = await Promise.all([account("ch-v"), account("ch-b")]);
    expect(n).toBeGreaterThan(B_CHALLENGES_PER_MINUTE + 1);
    // Auth challenges for the victim's device from another address (127.0.0.2), through b
    // (B_CHALLENGES_PER_MINUTE per caller address there): that caller runs out, the victim
    // (calling from 127.0.0.1) does not.
    const fromElsewhere = createClient(
      DirectoryService,
      createConnectTransport({ baseUrl: b.url, httpVersion: "1.1", useBinaryFormat: true, nodeOptions: { localAddress: "127.0.0.2" } }),
    );
    const ch = count(await Promise.all(Array.from({ length: n }, () => codeOf(fromElsewhere.getAuthChallenge({ device: victim.devices[0].address })))));
    expectLimited(ch, B_CHALLENGES_PER_MINUTE);
    expect(await codeOf(authenticateDevice(b.url, victim.devices[0].address, victim.devices[0].keys.signingSeed, provider))).toBe("ok");
    expect(await codeOf(fromElsewhere.getAuthChallenge({ device: bystander.devices[0].address }))).toBe("ResourceExhausted");
    const open = createClient(DirectoryService, plainTransport(a.url));
    expect(await codeOf(open.getAuthChallenge({ device: bystander.devices[0].address }))).toBe("ok");
  });

  it("key bundle claims beyond the per-caller limit get RESOURCE_EXHAUSTED", async () => {
    const [flooder, victim] = await Promise.all([account("cl-f"), account("cl-v")]);
    // 300 per minute per caller and instance.
    const claims = count(
      await Promise.all(Array.from({ length: Math.max(n, 320) }, () => codeOf(flooder.devices[0].directory.claimKeyBundles({ accountId: victim.accountId })))),
    );
    expect(claims.ResourceExhausted).toBeGreaterThan(0);
    expect(Object.keys(claims).sort()).toEqual(["ResourceExhausted", "ok"]);
  });
});

describe("no plaintext, private keys or tokens at rest or in logs", () => {
  it("end-to-end encrypted traffic leaves only ciphertext in JetStream and nothing secret in the logs", async () => {
    const [alice, bob] = await Promise.all([account("pt-a"), account("pt-b")]);
    const plaintext = `PLAINTEXT-${randomBytes(12).toString("hex")}`;
    // Client crypto for both ends (addresses as on the server).
    const mk = async (acc: TestAccount) => {
      const stores: ProtocolStores = createMemoryStores();
      const addr = acc.devices[0].address;
      const { identity } = await createDeviceIdentity(provider, stores, addr.deviceId, "dev", clock);
      await generatePrekeyBatch(provider, stores, { signedPrekeyId: 1, kemPrekeyId: 1, oneTimeFirstId: 1, oneTimeCount: 1, nowMs: clock });
      return { stores, identity, cipher: new SessionCipher(provider, stores, addr), addr };
    };
    const [ca, cb] = await Promise.all([mk(alice), mk(bob)]);
    await ca.stores.identity.saveRemoteIdentity(addressKey(cb.addr), { signingKey: cb.identity.signingKey, dhKey: cb.identity.dhKey });
    await cb.stores.identity.saveRemoteIdentity(addressKey(ca.addr), { signingKey: ca.identity.signingKey, dhKey: ca.identity.dhKey });
    const bundle = create(KeyBundleSchema, {
      identity: toDeviceIdentity(cb.identity, "dev", 0n),
      signedPrekey: { keyId: 1, publicKey: (await cb.stores.signedPrekeys.load(1))!.publicKey, signature: (await cb.stores.signedPrekeys.load(1))!.signature },
      kemPrekey: { keyId: 1, publicKey: (await cb.stores.kemPrekeys.load(1))!.publicKey, signature: (await cb.stores.kemPrekeys.load(1))!.signature },
      oneTimePrekey: { keyId: 1, publicKey: (await cb.stores.oneTimePrekeys.load(1))!.publicKey },
    });
    const content = create(ContentSchema, { sentAtMs: BigInt(clock), body: { case: "text", value: create(TextSchema, { body: plaintext }) } });
    const enc = await ca.cipher.encryptForDevices(content, [{ address: cb.addr, bundle }]);
    const res = await deliveryClient(alice.devices[0], a.url).send({
      messageId: enc.messageId,
      sharedBody: enc.sharedBody,
      entries: enc.entries.map((e) => entry(bob.devices[0], e.entry)),
    });
    expect(res.outcome.case).toBe("stored");

    // Bob receives and decrypts (proves the traffic was real).
    const abort = new AbortController();
    let got: { entry: Uint8Array; body: Uint8Array; seq: bigint } | undefined;
    for await (const ev of deliveryClient(bob.devices[0], b.url).receive({}, { signal: abort.signal })) {
      if (ev.event.case === "message") {
        got = { entry: ev.event.value.entry, body: ev.event.value.sharedBody, seq: ev.event.value.sequence };
        break;
      }
    }
    abort.abort();
    const dec = await cb.cipher.decrypt(got!.entry, got!.body, ca.addr);
    expect(dec.content?.body.case === "text" && dec.content.body.value.body).toBe(plaintext);

    // Secrets: plaintext, every private key either side holds, bearer tokens.
    const secrets: [string, Uint8Array][] = [["plaintext", new TextEncoder().encode(plaintext)]];
    for (const acc of [alice, bob]) {
      for (const d of acc.devices) {
        secrets.push(["signing seed", d.keys.signingSeed], ["dh private key", d.keys.dhPrivateKey], ["signed prekey private", d.prekeys.signed.privateKey]);
        secrets.push(["kem secret key", d.prekeys.kem.secretKey.subarray(0, 64)]);
        for (const k of d.prekeys.oneTime) secrets.push(["one-time prekey private", k.privateKey]);
        secrets.push(["token", new TextEncoder().encode(d.token)], ["token mac", new TextEncoder().encode(d.token.split(".")[4])]);
      }
    }
    for (const c of [ca, cb]) secrets.push(["client identity seed", c.identity.signingSeed], ["client dh private", c.identity.dhPrivateKey]);
    secrets.push(["token secret", new TextEncoder().encode(TOKEN_SECRET)]);
    const encodings = (b: Uint8Array): Buffer[] => {
      const buf = Buffer.from(b);
      return [buf, Buffer.from(buf.toString("hex")), Buffer.from(buf.toString("base64").replace(/=+$/, "")), Buffer.from(buf.toString("base64url"))];
    };

    // The store: every file nats-server wrote (messages sit in the block files, unacked).
    const store = await readTree(join(natsDir, "jetstream"));
    // Positive control: the scan does see stored ciphertext.
    expect(store.some((f) => f.data.includes(Buffer.from(got!.entry)))).toBe(true);
    const logs = Buffer.from(logLines.join("\n"));
    expect(logLines.some((l) => l.includes('"procedure":"Send"'))).toBe(true);
    const found: string[] = [];
    for (const [what, bytes] of secrets) {
      for (const needle of encodings(bytes)) {
        for (const f of store) if (f.data.includes(needle)) found.push(`${what} in ${f.path}`);
        if (logs.includes(needle)) found.push(`${what} in the server logs`);
      }
    }
    expect(found).toEqual([]);
    await deliveryClient(bob.devices[0], a.url).ack({ sequences: [got!.seq] });
  });
});

async function readTree(dir: string): Promise<{ path: string; data: Buffer }[]> {
  const out: { path: string; data: Buffer }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await readTree(p)));
    else if (e.isFile()) out.push({ path: p, data: await readFile(p) });
  }
  return out;
}
