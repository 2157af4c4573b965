import { create, toBinary } from "@bufbuild/protobuf";
import { GroupRole, GroupStateSchema, GroupMemberSchema } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { mapInOrder } from "../src/util/in-order.js";
import { describe, expect, it } from "vitest";
import { toHex } from "../src/crypto/bytes.js";
import { createDeterministicRandom } from "../src/crypto/deterministic-random.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import type { CryptoProvider } from "../src/crypto/provider.js";
import {
  applyGroupChange,
  compareForks,
  diffGroupStates,
  encodeGroupState,
  GroupChangeError,
  GroupStateError,
  signGroupState,
  verifyFirstSeen,
  verifyGenesis,
  verifyGroupStateChain,
  verifyGroupStateUpdate,
  type GroupDevice,
  type SigningKeyLookup,
  type VerifiedGroupState,
} from "../src/protocol/group-state.js";
import { generateLocalIdentity, type LocalIdentity } from "../src/protocol/identity.js";
import { PROVIDERS } from "./helpers.js";

const GROUP = new Uint8Array(16).fill(3);

/** Accounts with two devices each and a lookup over their (current) devices. */
function world(p: CryptoProvider) {
  const ids = new Map<string, LocalIdentity>();
  const revoked = new Set<string>();
  const dev = async (accountId: string, deviceId: number) => {
    const key = `${accountId}.${deviceId}`;
    if (!ids.has(key)) ids.set(key, await generateLocalIdentity(p, deviceId));
    return { address: { accountId, deviceId } as GroupDevice, identity: ids.get(key)! };
  };
  const lookup: SigningKeyLookup = (d) => (revoked.has(`${d.accountId}.${d.deviceId}`) ? undefined : ids.get(`${d.accountId}.${d.deviceId}`)?.signingKey);
  return { dev, lookup, revoke: (a: string, d: number) => revoked.add(`${a}.${d}`) };
}

async function genesis(p: CryptoProvider, w: ReturnType<typeof world>) {
  const state = encodeGroupState({
    groupId: GROUP,
    version: 1n,
    title: "trip",
    members: [
      { accountId: "carol", role: GroupRole.MEMBER },
      { accountId: "alice", role: GroupRole.ADMIN },
      { accountId: "bob", role: GroupRole.MEMBER },
    ],
    previousHash: new Uint8Array(0),
    adminsOnlyMessages: false,
  });
  const a = await w.dev("alice", 1);
  return verifyGenesis(p, await signGroupState(p, state, a.address, a.identity.signingSeed), w.lookup);
}

async function change(
  p: CryptoProvider,
  w: ReturnType<typeof world>,
  cur: VerifiedGroupState,
  by: [string, number],
  c: Parameters<typeof applyGroupChange>[1],
) {
  const d = await w.dev(by[0], by[1]);
  return signGroupState(p, applyGroupChange(cur, c), d.address, d.identity.signingSeed);
}

async function problem(fn: () => unknown): Promise<string | undefined> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof GroupStateError) return e.problem;
    throw e;
  }
  return undefined;
}

describe.each(PROVIDERS)("group state (%s)", (_name, makeProvider) => {
  it("creates a canonical version 1 and verifies a chain of admin changes", async () => {
    const p = makeProvider();
    const w = world(p);
    const v1 = await genesis(p, w);
    expect(v1.state.members.map((m) => m.accountId)).toEqual(["alice", "bob", "carol"]);
    const s2 = await change(p, w, v1, ["alice", 2], { add: ["dave"], promote: ["bob"] });
    const v2 = await verifyGroupStateUpdate(p, v1, s2, w.lookup);
    expect(v2.state.version).toBe(2n);
    expect(diffGroupStates(v1.state, v2.state)).toEqual({
      added: ["dave"],
      removed: [],
      promoted: ["bob"],
      demoted: [],
      titleChanged: false,
      settingsChanged: false,
    });
    // Bob, now an admin, removes carol and changes settings.
    const s3 = await change(p, w, v2, ["bob", 1], { remove: ["carol"], title: "trip 2", adminsOnlyMessages: true });
    const v3 = await verifyGroupStateUpdate(p, v2, s3, w.lookup);
    expect(diffGroupStates(v2.state, v3.state).removed).toEqual(["carol"]);
    expect(v3.state.adminsOnlyMessages).toBe(true);
    const chainEnd = await verifyGroupStateChain(p, [v1.signed, s2, s3], w.lookup);
    expect(toHex(chainEnd.hash)).toBe(toHex(v3.hash));
  });

  it("rejects a non-admin's correctly signed change (every kind of change)", async () => {
    const p = makeProvider();
    const w = world(p);
    const v1 = await genesis(p, w);
    const forged = [
      { add: ["mallory"] },
      { remove: ["alice"], promote: ["bob"] },
      { remove: ["bob"] }, // even removing oneself: leave is GroupLeave + an admin's state
      { promote: ["bob"] },
      { demote: ["alice"], promote: ["bob"] },
      { title: "pwned" },
      { adminsOnlyMessages: true },
    ];
    for (const c of forged) expect(await problem(async () => verifyGroupStateUpdate(p, v1, await change(p, w, v1, ["bob", 1], c), w.lookup))).toBe("not-admin");
  });

  it("rejects bad signatures, unknown or revoked signers, forks, gaps, replays and other groups", async () => {
    const p = makeProvider();
    const w = world(p);
    const v1 = await genesis(p, w);
    const s2 = await change(p, w, v1, ["alice", 1], { add: ["dave"] });
    expect(await problem(() => verifyGroupStateUpdate(p, v1, { ...s2, signature: s2.signature.map((b, i) => (i === 5 ? b ^ 1 : b)) }, w.lookup))).toBe(
      "bad-signature",
    );
    // Claims to be alice.1 but signed by bob.1's key.
    const bob = await w.dev("bob", 1);
    expect(
      await problem(async () =>
        verifyGroupStateUpdate(p, v1, await signGroupState(p, s2.state, { accountId: "alice", deviceId: 1 }, bob.identity.signingSeed), w.lookup),
      ),
    ).toBe("bad-signature");
    expect(
      await problem(() =>
        verifyGroupStateUpdate(p, v1, { ...s2, signer: { $typeName: "sealpost.directory.v1.DeviceAddress", accountId: "alice", deviceId: 9 } }, w.lookup),
      ),
    ).toBe("unknown-signer");
    w.revoke("alice", 1);
    expect(await problem(() => verifyGroupStateUpdate(p, v1, s2, w.lookup))).toBe("unknown-signer");
    const v2 = await verifyGroupStateUpdate(p, v1, await change(p, w, v1, ["alice", 2], { add: ["dave"] }), w.lookup);
    expect(await problem(() => verifyGroupStateUpdate(p, v2, v1.signed, w.lookup))).toBe("stale");
    expect(await problem(() => verifyGroupStateUpdate(p, v2, v2.signed, w.lookup))).toBe("stale");
    const s3 = await change(p, w, v2, ["alice", 2], { title: "x" });
    const s4 = await change(p, w, await verifyGroupStateUpdate(p, v2, s3, w.lookup), ["alice", 2], { title: "y" });
    expect(await problem(() => verifyGroupStateUpdate(p, v2, s4, w.lookup))).toBe("gap");
    // A version 3 built on a different version 2 (fork).
    const other2 = await verifyGroupStateUpdate(p, v1, await change(p, w, v1, ["alice", 2], { add: ["erin"] }), w.lookup);
    expect(await problem(async () => verifyGroupStateUpdate(p, v2, await change(p, w, other2, ["alice", 2], { title: "z" }), w.lookup))).toBe("fork");
    // Another group's state.
    const foreign = encodeGroupState({
      groupId: new Uint8Array(16).fill(9),
      version: 3n,
      title: "",
      members: [{ accountId: "alice", role: GroupRole.ADMIN }],
      previousHash: v2.hash,
      adminsOnlyMessages: false,
    });
    expect(
      await problem(async () =>
        verifyGroupStateUpdate(
          p,
          v2,
          await signGroupState(p, foreign, (await w.dev("alice", 2)).address, (await w.dev("alice", 2)).identity.signingSeed),
          w.lookup,
        ),
      ),
    ).toBe("wrong-group");
  });

  it("rejects invalid and non-canonical states even when an admin signs them", async () => {
    const p = makeProvider();
    const w = world(p);
    const v1 = await genesis(p, w);
    const a = await w.dev("alice", 1);
    const sign = (bytes: Uint8Array) => signGroupState(p, bytes, a.address, a.identity.signingSeed);
    const raw = (members: [string, GroupRole][], extra: Partial<{ title: string; previousHash: Uint8Array; version: bigint }> = {}) =>
      toBinary(
        GroupStateSchema,
        create(GroupStateSchema, {
          groupId: GROUP,
          version: extra.version ?? 2n,
          title: extra.title ?? "t",
          members: members.map(([accountId, role]) => create(GroupMemberSchema, { accountId, role })),
          previousHash: extra.previousHash ?? v1.hash,
        }),
      );
    const cases: Uint8Array[] = [
      raw([
        ["bob", GroupRole.ADMIN],
        ["alice", GroupRole.ADMIN],
      ]), // unsorted
      raw([
        ["alice", GroupRole.ADMIN],
        ["alice", GroupRole.MEMBER],
      ]), // duplicate
      raw([
        ["alice", GroupRole.MEMBER],
        ["bob", GroupRole.MEMBER],
      ]), // no admin
      raw([
        ["alice", GroupRole.ADMIN],
        ["bob", GroupRole.UNSPECIFIED],
      ]), // bad role
      raw([
        ["alice", GroupRole.ADMIN],
        ["B@D", GroupRole.MEMBER],
      ]), // bad account id
      raw([["alice", GroupRole.ADMIN]], { title: "x".repeat(257) }),
      raw([["alice", GroupRole.ADMIN]], { previousHash: new Uint8Array(5) }),
      raw([]),
    ];
    for (const c of cases) expect(await problem(async () => verifyGroupStateUpdate(p, v1, await sign(c), w.lookup))).toBe("invalid-state");
    // Same fields, non-canonical bytes (an unknown field appended).
    const extra = new Uint8Array([...raw([["alice", GroupRole.ADMIN]]), 0x78, 0x01]);
    expect(await problem(async () => verifyGroupStateUpdate(p, v1, await sign(extra), w.lookup))).toBe("non-canonical");
    expect(await problem(async () => verifyGroupStateUpdate(p, v1, await sign(new Uint8Array([0xff, 0xff])), w.lookup))).toBe("malformed");
  });

  it("version 1 must be signed by an admin it lists; a joiner's first-seen state by an admin of it", async () => {
    const p = makeProvider();
    const w = world(p);
    const state = encodeGroupState({
      groupId: GROUP,
      version: 1n,
      title: "",
      members: [
        { accountId: "alice", role: GroupRole.ADMIN },
        { accountId: "bob", role: GroupRole.MEMBER },
      ],
      previousHash: new Uint8Array(0),
      adminsOnlyMessages: false,
    });
    const bob = await w.dev("bob", 1);
    expect(await problem(async () => verifyGenesis(p, await signGroupState(p, state, bob.address, bob.identity.signingSeed), w.lookup))).toBe("not-admin");
    const v1 = await genesis(p, w);
    const s2 = await change(p, w, v1, ["alice", 1], { add: ["dave"] });
    expect(await problem(() => verifyGenesis(p, s2, w.lookup))).toBe("bad-first-version");
    expect((await verifyFirstSeen(p, s2, w.lookup, "dave")).state.version).toBe(2n);
    expect(await problem(() => verifyFirstSeen(p, s2, w.lookup, "erin"))).toBe("not-a-member");
    const forged = await signGroupState(p, s2.state, bob.address, bob.identity.signingSeed);
    expect(await problem(() => verifyFirstSeen(p, forged, w.lookup, "dave"))).toBe("not-admin");
  });

  it("identical concurrent changes sign identical state bytes; forks are ordered by hash", async () => {
    const p = makeProvider();
    const w = world(p);
    let v1 = await genesis(p, w);
    const s2 = await change(p, w, v1, ["alice", 1], { remove: ["carol"] });
    v1 = { ...v1 };
    const s2b = await change(p, w, v1, ["alice", 2], { remove: ["carol"] });
    expect(toHex(s2.state)).toBe(toHex(s2b.state));
    const a = await verifyGroupStateUpdate(p, v1, s2, w.lookup);
    const b = await verifyGroupStateUpdate(p, v1, await change(p, w, v1, ["alice", 1], { title: "other" }), w.lookup);
    expect(Math.sign(compareForks(a, b))).toBe(-Math.sign(compareForks(b, a)));
    expect(compareForks(a, a)).toBe(0);
  });

  it("refuses changes that do not apply or leave no admin", async () => {
    const p = makeProvider();
    const w = world(p);
    const v1 = await genesis(p, w);
    expect(() => applyGroupChange(v1, { add: ["bob"] })).toThrow(GroupChangeError);
    expect(() => applyGroupChange(v1, { remove: ["zed"] })).toThrow(GroupChangeError);
    expect(() => applyGroupChange(v1, { promote: ["zed"] })).toThrow(GroupChangeError);
    expect(await problem(() => applyGroupChange(v1, { demote: ["alice"] }))).toBe("invalid-state");
    expect(await problem(() => applyGroupChange(v1, { remove: ["alice"] }))).toBe("invalid-state");
    expect(() => applyGroupChange(v1, { demote: ["alice"], promote: ["bob"] })).not.toThrow();
  });
});

describe("group state: determinism", () => {
  it("same inputs, same signed bytes", async () => {
    const out = await mapInOrder([0, 1], async () => {
      const p = createNodeProvider({ random: createDeterministicRandom("group-state-determinism") });
      const v1 = await genesis(p, world(p));
      return toHex(toBinary(GroupStateSchema, v1.state)) + toHex(v1.signed.signature);
    });
    expect(out[0]).toBe(out[1]);
  });
});
