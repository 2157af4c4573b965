import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { SharedBodySchema } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { ContentSchema, TextSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import fc from "fast-check";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { concatBytes, toHex } from "../src/crypto/bytes.js";
import { createDeterministicRandom } from "../src/crypto/deterministic-random.js";
import { DecryptionError, DuplicateMessageError, InvalidMessageError, InvalidSignatureError, NoSessionError, TooFarAheadError } from "../src/crypto/errors.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import type { CryptoProvider } from "../src/crypto/provider.js";
import { GroupCipher, groupContent } from "../src/protocol/group-cipher.js";
import { MAX_SENDER_KEY_FORWARD_JUMP, MAX_SENDER_KEY_SKIPPED } from "../src/protocol/group-labels.js";
import { kdfChain, ZERO_NONCE } from "../src/protocol/kdf.js";
import { pad } from "../src/protocol/padding.js";
import {
  cloneSenderKeyRecord,
  createOwnSenderKey,
  encodeSenderKeySharedBody,
  parseSenderKeyBody,
  planSenderKeyDecrypt,
  processSenderKeyDistribution,
  senderKeyDistribution,
  senderKeyEncrypt,
  senderKeyHeader,
} from "../src/protocol/sender-keys.js";
import { createFileGroupStores } from "../src/store/group-file-store.js";
import { createMemoryGroupStores } from "../src/store/group-memory-store.js";
import { PROVIDERS } from "./helpers.js";

const GROUP = new Uint8Array(16).fill(7);
const OTHER_GROUP = new Uint8Array(16).fill(8);
const ALICE = { accountId: "alice", deviceId: 1 };

function msg(groupId: Uint8Array, body: string): Content {
  return groupContent(groupId, { messageId: new Uint8Array(16).fill(1), sentAtMs: 1n, body: { case: "text", value: create(TextSchema, { body }) } });
}
const textOf = (c: Content) => (c.body.case === "text" ? c.body.value.body : undefined);

/** A sender and a receiver with the sender's distribution processed. */
async function pair(p: CryptoProvider) {
  const sender = new GroupCipher(p, createMemoryGroupStores().senderKeys, { now: () => 1 });
  const receiver = new GroupCipher(p, createMemoryGroupStores().senderKeys, { now: () => 1 });
  await receiver.processDistribution(ALICE, await sender.distribution(GROUP));
  return { sender, receiver };
}

describe("sender keys: wire", () => {
  it("hand-written SharedBody encoder writes what protobuf-es writes", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        fc.uint8Array({ maxLength: 600 }),
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        (d, chainId, iteration, ct, sig) => {
          const ours = encodeSenderKeySharedBody(d, chainId, iteration, ct, sig);
          const theirs = toBinary(
            SharedBodySchema,
            create(SharedBodySchema, {
              kind: { case: "senderKey", value: { version: 1, distributionId: d, chainId, iteration, ciphertext: ct, signature: sig } },
            }),
          );
          expect(toHex(ours)).toBe(toHex(theirs));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("both providers produce identical bytes from the same randomness", async () => {
    const out: string[] = [];
    for (const [, make] of PROVIDERS) {
      const p = make("sender-keys-agreement");
      const own = await createOwnSenderKey(p, GROUP, 0);
      const bodies = [0, 1, 2].map(async (i) => toHex(await senderKeyEncrypt(p, own, toBinary(ContentSchema, msg(GROUP, `m${i}`)))));
      out.push(bodies.join(","));
    }
    expect(out[0]).toBe(out[1]);
  });
});

describe.each(PROVIDERS)("sender keys (%s)", (_name, makeProvider) => {
  it("delivers in order; the receiver reads what the sender wrote", async () => {
    const p = makeProvider();
    const { sender, receiver } = await pair(p);
    for (let i = 0; i < 5; i++) {
      const { sharedBody, iteration } = await sender.encrypt(GROUP, msg(GROUP, `hello ${i}`));
      expect(iteration).toBe(i);
      const d = await receiver.decrypt(ALICE, sharedBody);
      expect(textOf(d.content)).toBe(`hello ${i}`);
      expect(d.iteration).toBe(i);
      expect(toHex(d.groupId)).toBe(toHex(GROUP));
    }
  });

  it("randomized reordering, loss and duplication: each delivered message decrypts exactly once", async () => {
    const p = makeProvider();
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }).chain((n) =>
          fc.record({
            n: fc.constant(n),
            order: fc.shuffledSubarray([...Array(n).keys()], { minLength: 0, maxLength: n }),
            dups: fc.array(fc.nat({ max: n - 1 }), { maxLength: 5 }),
          }),
        ),
        async ({ n, order, dups }) => {
          const { sender, receiver } = await pair(p);
          const bodies: Uint8Array[] = [];
          for (let i = 0; i < n; i++) bodies.push((await sender.encrypt(GROUP, msg(GROUP, `m${i}`))).sharedBody);
          const seen = new Set<number>();
          const deliveries = [...order, ...dups];
          for (const i of deliveries) {
            if (seen.has(i)) {
              await expect(receiver.decrypt(ALICE, bodies[i])).rejects.toBeInstanceOf(DuplicateMessageError);
            } else if (!order.includes(i)) {
              // a dup of a lost message is its first delivery
              const d = await receiver.decrypt(ALICE, bodies[i]);
              expect(textOf(d.content)).toBe(`m${i}`);
              seen.add(i);
            } else {
              const d = await receiver.decrypt(ALICE, bodies[i]);
              expect(textOf(d.content)).toBe(`m${i}`);
              seen.add(i);
            }
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it("accepts a jump of exactly the limit, rejects one beyond it without changing state", async () => {
    const p = makeProvider();
    const own = await createOwnSenderKey(p, GROUP, 0);
    const record = processSenderKeyDistribution(undefined, senderKeyDistribution(own), 0);
    const snapshot = cloneSenderKeyRecord(record);
    // Advance the sender far ahead without delivering.
    const bodies: Uint8Array[] = [];
    for (let i = 0; i <= MAX_SENDER_KEY_FORWARD_JUMP + 1; i++) bodies.push(await senderKeyEncrypt(p, own, toBinary(ContentSchema, msg(GROUP, `m${i}`))));
    await expect(planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[MAX_SENDER_KEY_FORWARD_JUMP + 1])!)).rejects.toThrow(TooFarAheadError);
    expect(record).toEqual(snapshot);
    const plan = await planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[MAX_SENDER_KEY_FORWARD_JUMP])!);
    plan.commit();
    expect(record.chains[0].iteration).toBe(MAX_SENDER_KEY_FORWARD_JUMP + 1);
    expect(record.chains[0].skipped).toHaveLength(Math.min(MAX_SENDER_KEY_FORWARD_JUMP, MAX_SENDER_KEY_SKIPPED));
    // A skipped one still decrypts, once.
    const late = await planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[17])!);
    late.commit();
    await expect(planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[17])!)).rejects.toThrow(DuplicateMessageError);
    // The next one in order decrypts.
    (await planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[MAX_SENDER_KEY_FORWARD_JUMP + 1])!)).commit();
  });

  it("keeps at most MAX_SENDER_KEY_SKIPPED skipped keys; the oldest expire", async () => {
    const p = makeProvider();
    const own = await createOwnSenderKey(p, GROUP, 0);
    const record = processSenderKeyDistribution(undefined, senderKeyDistribution(own), 0);
    const bodies: Uint8Array[] = [];
    const total = MAX_SENDER_KEY_SKIPPED + 10;
    for (let i = 0; i < total; i++) bodies.push(await senderKeyEncrypt(p, own, toBinary(ContentSchema, msg(GROUP, `m${i}`))));
    (await planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[1000])!)).commit();
    (await planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[total - 1])!)).commit();
    expect(record.chains[0].skipped.length).toBe(MAX_SENDER_KEY_SKIPPED);
    await expect(planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[0])!)).rejects.toThrow(DuplicateMessageError);
    (await planSenderKeyDecrypt(p, record, parseSenderKeyBody(bodies[total - 2])!)).commit();
  });

  it("rejects tampering with any field and leaves the record unchanged", async () => {
    const p = makeProvider();
    const own = await createOwnSenderKey(p, GROUP, 0);
    const record = processSenderKeyDistribution(undefined, senderKeyDistribution(own), 0);
    const body = await senderKeyEncrypt(p, own, toBinary(ContentSchema, msg(GROUP, "tamper me")));
    const m = parseSenderKeyBody(body)!;
    const snapshot = cloneSenderKeyRecord(record);
    const variants = [
      { ...m, iteration: 1 },
      { ...m, ciphertext: Uint8Array.from(m.ciphertext, (b, i) => (i === 3 ? b ^ 1 : b)) },
      { ...m, signature: Uint8Array.from(m.signature, (b, i) => (i === 0 ? b ^ 1 : b)) },
    ];
    for (const v of variants) await expect(planSenderKeyDecrypt(p, record, v)).rejects.toThrow(InvalidSignatureError);
    await expect(planSenderKeyDecrypt(p, record, { ...m, chainId: (m.chainId + 1) >>> 0 })).rejects.toThrow(NoSessionError);
    await expect(planSenderKeyDecrypt(p, record, { ...m, version: 2 })).rejects.toThrow(/version/);
    await expect(planSenderKeyDecrypt(p, record, { ...m, distributionId: new Uint8Array(16) })).rejects.toThrow(InvalidMessageError);
    expect(record).toEqual(snapshot);
    (await planSenderKeyDecrypt(p, record, m)).commit();
  });

  it("a member who knows the chain key cannot forge the sender's messages", async () => {
    const p = makeProvider();
    const own = await createOwnSenderKey(p, GROUP, 0);
    const dist = senderKeyDistribution(own);
    const victim = processSenderKeyDistribution(undefined, dist, 0);
    // Mallory (a member) holds the same distribution, so she can derive message keys...
    const step = kdfChain(dist.chainKey);
    const header = senderKeyHeader(GROUP, dist.distributionId, dist.chainId, 0);
    const ct = await p.aesGcmSeal(step.messageKey, ZERO_NONCE, pad(toBinary(ContentSchema, msg(GROUP, "forged"))), header);
    // ...but not sign: her own key's signature does not verify.
    const malloryKey = p.random(32);
    const sig = await p.ed25519Sign(malloryKey, concatBytes(header, ct));
    const forged = parseSenderKeyBody(encodeSenderKeySharedBody(dist.distributionId, dist.chainId, 0, ct, sig))!;
    await expect(planSenderKeyDecrypt(p, victim, forged)).rejects.toThrow(InvalidSignatureError);
    // And a well-signed message under a wrong key fails the AEAD.
    const wrongCt = await p.aesGcmSeal(new Uint8Array(32), ZERO_NONCE, pad(new Uint8Array(3)), header);
    const goodSig = await p.ed25519Sign(own.signingSeed, concatBytes(header, wrongCt));
    await expect(
      planSenderKeyDecrypt(p, victim, parseSenderKeyBody(encodeSenderKeySharedBody(dist.distributionId, dist.chainId, 0, wrongCt, goodSig))!),
    ).rejects.toThrow(DecryptionError);
  });

  it("binds content to the group: a body claiming another conversation is refused", async () => {
    const p = makeProvider();
    const own = await createOwnSenderKey(p, GROUP, 0);
    const receiver = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    await receiver.processDistribution(ALICE, senderKeyDistribution(own));
    const body = await senderKeyEncrypt(p, own, toBinary(ContentSchema, msg(OTHER_GROUP, "wrong group")));
    await expect(receiver.decrypt(ALICE, body)).rejects.toBeInstanceOf(InvalidMessageError);
    // The same iteration is still available (nothing committed).
    const sender = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    await expect(sender.encrypt(GROUP, msg(OTHER_GROUP, "x"))).rejects.toBeInstanceOf(InvalidMessageError);
  });

  it("ignores a re-sent distribution of a chain it holds; refuses a conflicting signing key", async () => {
    const p = makeProvider();
    const own = await createOwnSenderKey(p, GROUP, 0);
    const d0 = senderKeyDistribution(own);
    const record = processSenderKeyDistribution(undefined, d0, 0);
    const b0 = await senderKeyEncrypt(p, own, toBinary(ContentSchema, msg(GROUP, "zero")));
    (await planSenderKeyDecrypt(p, record, parseSenderKeyBody(b0)!)).commit();
    // Replaying the old distribution must not revive iteration 0.
    processSenderKeyDistribution(record, d0, 0);
    await expect(planSenderKeyDecrypt(p, record, parseSenderKeyBody(b0)!)).rejects.toThrow(DuplicateMessageError);
    await expect((async () => processSenderKeyDistribution(record, { ...d0, signingKey: await p.ed25519PublicKey(p.random(32)) }, 0))()).rejects.toThrow(
      InvalidMessageError,
    );
    expect(() => processSenderKeyDistribution(undefined, { ...d0, chainKey: new Uint8Array(31) }, 0)).toThrow(InvalidMessageError);
  });

  it("rotation: a removed member cannot read messages after the sender rotated", async () => {
    const p = makeProvider();
    const alice = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    const bob = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    const carol = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    const d1 = await alice.distribution(GROUP);
    await bob.processDistribution(ALICE, d1);
    await carol.processDistribution(ALICE, d1);
    const before = await alice.encrypt(GROUP, msg(GROUP, "before removal"));
    expect(textOf((await carol.decrypt(ALICE, before.sharedBody)).content)).toBe("before removal");
    expect(textOf((await bob.decrypt(ALICE, before.sharedBody)).content)).toBe("before removal");

    // Carol is removed: Alice rotates and distributes to Bob only.
    const d2 = await alice.rotate(GROUP);
    expect(toHex(d2.distributionId)).not.toBe(toHex(d1.distributionId));
    expect(toHex(d2.chainKey)).not.toBe(toHex(d1.chainKey));
    await bob.processDistribution(ALICE, d2);
    const after = await alice.encrypt(GROUP, msg(GROUP, "after removal"));
    expect(textOf((await bob.decrypt(ALICE, after.sharedBody)).content)).toBe("after removal");
    await expect(carol.decrypt(ALICE, after.sharedBody)).rejects.toBeInstanceOf(NoSessionError);
    // Even rewriting the distribution id to the old one, her old chain cannot open it.
    const m = parseSenderKeyBody(after.sharedBody)!;
    await expect(carol.decrypt(ALICE, { ...m, distributionId: d1.distributionId })).rejects.toThrow();
  });

  it("a new member cannot read messages sent before it received the key", async () => {
    const p = makeProvider();
    const alice = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    const bob = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    const dave = new GroupCipher(p, createMemoryGroupStores().senderKeys);
    await bob.processDistribution(ALICE, await alice.distribution(GROUP));
    const early: Uint8Array[] = [];
    for (let i = 0; i < 3; i++) early.push((await alice.encrypt(GROUP, msg(GROUP, `early ${i}`))).sharedBody);
    const dist = await alice.distribution(GROUP);
    expect(dist.iteration).toBe(3);
    await dave.processDistribution(ALICE, dist);
    for (const b of early) await expect(dave.decrypt(ALICE, b)).rejects.toBeInstanceOf(DuplicateMessageError);
    const late = await alice.encrypt(GROUP, msg(GROUP, "welcome"));
    expect(textOf((await dave.decrypt(ALICE, late.sharedBody)).content)).toBe("welcome");
    for (const b of early) await bob.decrypt(ALICE, b);
  });

  it("decrypting needs the distribution of that sender device", async () => {
    const p = makeProvider();
    const { sender, receiver } = await pair(p);
    const { sharedBody } = await sender.encrypt(GROUP, msg(GROUP, "hi"));
    await expect(receiver.decrypt({ accountId: "alice", deviceId: 2 }, sharedBody)).rejects.toBeInstanceOf(NoSessionError);
    await expect(receiver.decrypt(ALICE, new Uint8Array([0xff]))).rejects.toBeInstanceOf(InvalidMessageError);
  });
});

describe("sender keys: file store", () => {
  it("survives a restart (records and own key persisted)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sealpost-groups-"));
    try {
      const p = createNodeProvider();
      const aliceStores = createFileGroupStores(path.join(dir, "alice"), { fsync: false });
      const bobStores = createFileGroupStores(path.join(dir, "bob"), { fsync: false });
      let alice = new GroupCipher(p, aliceStores.senderKeys);
      let bob = new GroupCipher(p, bobStores.senderKeys);
      await bob.processDistribution(ALICE, await alice.distribution(GROUP));
      const b0 = await alice.encrypt(GROUP, msg(GROUP, "zero"));
      const b1 = await alice.encrypt(GROUP, msg(GROUP, "one"));
      await bob.decrypt(ALICE, b1.sharedBody);
      alice = new GroupCipher(p, createFileGroupStores(path.join(dir, "alice"), { fsync: false }).senderKeys);
      bob = new GroupCipher(p, createFileGroupStores(path.join(dir, "bob"), { fsync: false }).senderKeys);
      const b2 = await alice.encrypt(GROUP, msg(GROUP, "two"));
      expect(b2.iteration).toBe(2);
      expect(textOf((await bob.decrypt(ALICE, b0.sharedBody)).content)).toBe("zero");
      expect(textOf((await bob.decrypt(ALICE, b2.sharedBody)).content)).toBe("two");
      await expect(bob.decrypt(ALICE, b1.sharedBody)).rejects.toBeInstanceOf(DuplicateMessageError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("noble and node decrypt each other's group messages", async () => {
    const a = createNobleProvider({ random: createDeterministicRandom("x") });
    const b = createNodeProvider();
    const own = await createOwnSenderKey(a, GROUP, 0);
    const rec = processSenderKeyDistribution(undefined, senderKeyDistribution(own), 0);
    const body = await senderKeyEncrypt(a, own, toBinary(ContentSchema, msg(GROUP, "cross")));
    const plan = await planSenderKeyDecrypt(b, rec, parseSenderKeyBody(body)!);
    expect(textOf(fromBinary(ContentSchema, plan.plaintext))).toBe("cross");
  });
});
