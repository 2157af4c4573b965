/**
 * Randomized conversations (fast-check): two devices exchange messages through a hostile
 * network that reorders, drops and duplicates, while either side restarts from its durable
 * file store. Checked against a model: every delivered message decrypts to its text exactly
 * once; a duplicate fails with duplicate_message (and changes nothing); channel reports
 * classify each entry exactly as the model predicts. SEALPOST_LONG=1 runs a larger profile.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { createFileStores } from "../src/store/file-store.js";
import { PROVIDERS, bodyText, introduce, makeDevice, text, type TestDevice } from "./helpers.js";

const LONG = !!process.env.SEALPOST_LONG;
const root = mkdtempSync(path.join(tmpdir(), "sealpost-conv-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

type Command =
  | { kind: "send"; fromAlice: boolean; count: number }
  | { kind: "deliver"; pick: number; duplicate: boolean }
  | { kind: "drop"; pick: number }
  | { kind: "restart"; alice: boolean };

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("send" as const), fromAlice: fc.boolean(), count: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("deliver" as const), pick: fc.nat(), duplicate: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drop" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("restart" as const), alice: fc.boolean() }) },
);

interface InFlight {
  fromAlice: boolean;
  text: string;
  sequence: number;
  entry: Uint8Array;
  body: Uint8Array;
}

let runId = 0;

describe.each(PROVIDERS)("randomized conversations (%s)", (_name, makeProvider) => {
  it("reordering, drops, duplicates and restarts keep both sides consistent", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 5, maxLength: LONG ? 120 : 30 }), async (commands) => {
        const p = makeProvider();
        const dir = path.join(root, `run-${runId++}`);
        const opts = { fsync: false };
        const alice = await makeDevice(p, "alice", 1, createFileStores(path.join(dir, "alice"), opts));
        const bob = await makeDevice(p, "bob", 1, createFileStores(path.join(dir, "bob"), opts));
        await introduce(alice, bob);
        const devices = { alice, bob };
        const pending: InFlight[] = [];
        const delivered: InFlight[] = [];
        const seen = { alice: new Set<number>(), bob: new Set<number>() };
        const highest = { alice: 0, bob: 0 };
        let sentCount = 0;
        let bobStarted = false;

        const send = async (from: TestDevice, to: TestDevice, fromAlice: boolean) => {
          const label = `m${sentCount++}`;
          const recipient = fromAlice && !bobStarted ? { address: to.address, bundle: await to.bundle() } : { address: to.address };
          bobStarted = true;
          const m = await from.cipher.encryptForDevices(text(label), [recipient]);
          pending.push({ fromAlice, text: label, sequence: m.entries[0].channelSequence, entry: m.entries[0].entry, body: m.sharedBody });
        };

        const receive = async (msg: InFlight) => {
          const to = msg.fromAlice ? devices.bob : devices.alice;
          const from = msg.fromAlice ? devices.alice : devices.bob;
          const side = msg.fromAlice ? "bob" : "alice";
          const d = await to.cipher.decrypt(msg.entry, msg.body, from.address);
          expect(bodyText(d.content)).toBe(msg.text);
          const s = msg.sequence;
          const expected = s === highest[side] + 1 ? "in_order" : s > highest[side] ? "gap" : "late";
          expect(d.channel.status).toBe(expected);
          expect(seen[side].has(s)).toBe(false);
          seen[side].add(s);
          highest[side] = Math.max(highest[side], s);
        };

        for (const c of commands) {
          if (c.kind === "send") {
            // Bob can only send once he has received something (he has no session before).
            const fromAlice = c.fromAlice || !(await devices.bob.cipher.hasSession(devices.alice.address));
            for (let i = 0; i < c.count; i++) await send(fromAlice ? devices.alice : devices.bob, fromAlice ? devices.bob : devices.alice, fromAlice);
          } else if (c.kind === "deliver") {
            if (c.duplicate && delivered.length > 0) {
              const msg = delivered[c.pick % delivered.length];
              const to = msg.fromAlice ? devices.bob : devices.alice;
              const err = await to.cipher.decrypt(msg.entry, msg.body, (msg.fromAlice ? devices.alice : devices.bob).address).catch((e) => e);
              expect(err.code).toBe("duplicate_message");
            } else if (pending.length > 0) {
              const [msg] = pending.splice(c.pick % pending.length, 1);
              await receive(msg);
              delivered.push(msg);
            }
          } else if (c.kind === "drop") {
            if (pending.length > 0) pending.splice(c.pick % pending.length, 1);
          } else {
            const d = c.alice ? devices.alice : devices.bob;
            d.restart(createFileStores(path.join(dir, c.alice ? "alice" : "bob"), opts));
          }
        }
        // Whatever is still in flight arrives at the end, in reverse order.
        while (pending.length > 0) {
          const msg = pending.pop()!;
          await receive(msg);
        }
      }),
      { numRuns: LONG ? 60 : 12 },
    );
  });
});
