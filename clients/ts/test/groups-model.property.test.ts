/**
 * Randomized membership histories over the in-memory network (fast-check): sends, adds,
 * removals, leaves, linked and revoked devices, with a hostile server that hands every group
 * body to every device. Invariants after each step:
 * - a message is read by exactly the devices that were current devices of member accounts
 *   when it was sent (the sender's own device aside), never by anyone else;
 * - every active device agrees on the group state; removed and departed devices are inactive.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { addressKey } from "../src/protocol/address.js";
import { FakeNetwork, type FakeDevice } from "./groups-network.js";

const POOL = ["bob", "carol", "dave", "erin"];

type Op =
  | { kind: "send"; who: number }
  | { kind: "add"; account: number }
  | { kind: "remove"; account: number }
  | { kind: "leave"; account: number }
  | { kind: "link"; account: number }
  | { kind: "revoke"; account: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("send" as const), who: fc.nat(50) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("add" as const), account: fc.nat(POOL.length - 1) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("remove" as const), account: fc.nat(POOL.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("leave" as const), account: fc.nat(POOL.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("link" as const), account: fc.nat(POOL.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("revoke" as const), account: fc.nat(POOL.length - 1) }) },
);

describe("groups: randomized membership model", () => {
  it("only members at send time read a message; every active device agrees on the state", async () => {
    const provider = createNodeProvider();
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 25 }), async (ops) => {
        const net = new FakeNetwork(provider);
        const alice = await net.add("alice", 1);
        const nextDeviceId = new Map<string, number>([["alice", 2]]);
        for (const a of POOL) {
          await net.add(a, 1);
          nextDeviceId.set(a, 2);
        }
        const members = new Set(["alice", "bob", "carol"]);
        const g = (await alice.manager.createGroup("model", ["bob", "carol"])).groupId;
        await net.settle();
        /** Expected readers per message text. */
        const expected = new Map<string, Set<string>>();
        const current = (): FakeDevice[] => [...members].flatMap((a) => net.devicesOf(a));
        let n = 0;
        for (const op of ops) {
          if (op.kind === "send") {
            // Any current device that knows the group (a newly linked one learns it at the next send).
            const senders: FakeDevice[] = [];
            for (const d of current()) if ((await d.manager.info(g))?.active) senders.push(d);
            const sender = senders[op.who % senders.length];
            const text = `m${n++}`;
            await sender.manager.sendText(g, text);
            expected.set(
              text,
              new Set(
                current()
                  .filter((d) => d !== sender)
                  .map((d) => d.key),
              ),
            );
            // The hostile server hands the body to every device, members or not.
            const mail = sender.sentBodies.at(-1)!;
            for (const d of net.all) if (d !== sender && !d.inbox.includes(mail)) d.inbox.push(mail);
          } else if (op.kind === "add") {
            const a = POOL[op.account];
            if (members.has(a)) continue;
            await alice.manager.addMembers(g, [a]);
            members.add(a);
          } else if (op.kind === "remove") {
            const a = POOL[op.account];
            if (!members.has(a)) continue;
            await alice.manager.removeMember(g, a);
            members.delete(a);
          } else if (op.kind === "leave") {
            const a = POOL[op.account];
            if (!members.has(a)) continue;
            await net.devicesOf(a)[0].manager.leave(g);
            members.delete(a);
          } else if (op.kind === "link") {
            const a = POOL[op.account];
            const id = nextDeviceId.get(a)!;
            nextDeviceId.set(a, id + 1);
            await net.add(a, id);
          } else {
            const devices = net.devicesOf(POOL[op.account]);
            if (devices.length > 1) net.revoke(devices.at(-1)!);
          }
          await net.settle();
        }
        // A last message, so devices linked since the last send learn the group too.
        await alice.manager.sendText(g, "final");
        expected.set(
          "final",
          new Set(
            current()
              .filter((d) => d !== alice)
              .map((d) => d.key),
          ),
        );
        await net.settle();
        for (const d of net.all) {
          const got = new Set(d.texts(g));
          for (const [text, readers] of expected) {
            if (readers.has(d.key)) expect(got.has(text), `${d.key} should read ${text}`).toBe(true);
            else expect(got.has(text), `${d.key} must not read ${text}`).toBe(false);
          }
        }
        const versions = new Set<number>();
        for (const d of current()) {
          const info = await d.manager.info(g);
          expect(info?.active, `${d.key} active`).toBe(true);
          versions.add(info!.version);
          expect(info!.members.map((m) => m.accountId).sort()).toEqual([...members].sort());
        }
        expect(versions.size).toBe(1);
        for (const a of POOL.filter((x) => !members.has(x))) {
          for (const d of net.devicesOf(a)) {
            const info = await d.manager.info(g);
            if (info) expect(info.active, `${addressKey(d.self)} inactive`).toBe(false);
          }
        }
      }),
      { numRuns: Number(process.env.GROUP_MODEL_RUNS ?? 30) },
    );
  });
});
