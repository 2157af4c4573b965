/**
 * Send's device-list check has two ways to the same answer: the quick one for the common Send
 * (every list in memory and agreeing: no promise, no read) and the general one, which reads
 * what it lacks and reports every difference. Random lists and random entry sets, each sent
 * through an instance whose lists are in memory and through one that must read them: the
 * answers are the same (Stored, or the same MismatchedDevices, or the same error), and a Send
 * that agrees reads nothing on the first.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { ConnectError } from "@connectrpc/connect";
import type { SendResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { startTestNats, type TestNats } from "@sealpost/test-support";
import { connectNats, type Nats } from "../src/nats/connection.js";
import { ensureLayout } from "../src/nats/layout.js";
import { TokenSigner } from "../src/auth/tokens.js";
import { Authenticator } from "../src/auth/authenticator.js";
import type { Directory } from "../src/directory/service.js";
import { createDelivery, type Delivery } from "../src/delivery/service.js";
import type { CurrentDeviceList, DeviceLists } from "../src/delivery/device-lists.js";
import { listsAgree } from "../src/delivery/list-agreement.js";
import { bytes, entriesFor, inProcessContext, newMessageId, routerClients, type DeliveryClient } from "./delivery-helpers.js";

const RUNS = process.env.SEALPOST_LONG ? 400 : 60;
const ACCOUNTS = ["lc-a", "lc-b", "lc-c"];

let nats: TestNats;
let conn: Nats;
const lists = new Map<string, CurrentDeviceList>();
/** Listed devices that have uploaded no prekeys (leaving them out is not a mismatch). */
const withoutPrekeys = new Set<string>();
const reads = { quick: 0, general: 0 };
const deliveries: Delivery[] = [];
let quick: (accountId: string, deviceId: number) => DeliveryClient;
let general: (accountId: string, deviceId: number) => DeliveryClient;

beforeAll(async () => {
  nats = await startTestNats();
  conn = await connectNats(nats.url, "send-list-check");
  const layout = await ensureLayout(conn.jsm, conn.kvm, 2, 1);
  const tokens = new TokenSigner(bytes("list-check-secret-list-check-secret!"));
  const ctx = inProcessContext(conn, layout, tokens, 2);
  // Tokens are checked against the lists at the call (not the Send's own check).
  const auth = new Authenticator(tokens, { isActive: async () => true });
  const devicesWithoutPrekeys = async (a: string, ids: number[]) => ids.filter((id) => withoutPrekeys.has(`${a}/${id}`));
  const instance = async (deviceLists: DeviceLists) => {
    const d = await createDelivery(ctx, auth, {} as Directory, { deviceLists, limits: { sendsPerMinute: 100_000 } });
    deliveries.push(d);
    return routerClients(d, tokens);
  };
  quick = await instance({
    currentDeviceList: async (a) => (reads.quick++, lists.get(a)),
    cachedDeviceList: (a) => lists.get(a),
    devicesWithoutPrekeys,
  });
  general = await instance({ currentDeviceList: async (a) => (reads.general++, lists.get(a)), devicesWithoutPrekeys });
});
afterAll(async () => {
  for (const d of deliveries) await d.close();
  await conn?.nc.close();
  await nats?.stop();
});

/** What a Send answered, without what differs between any two Sends (sequences, times). */
async function answer(client: DeliveryClient, req: Parameters<DeliveryClient["send"]>[0]): Promise<unknown> {
  let res: SendResponse;
  try {
    res = await client.send(req);
  } catch (e) {
    return { error: ConnectError.from(e).code, message: ConnectError.from(e).rawMessage };
  }
  if (res.outcome.case === "stored") return { stored: res.outcome.value.entries.map((e) => `${e.device?.accountId}/${e.device?.deviceId}`) };
  if (res.outcome.case === "mismatchedDevices")
    return {
      mismatch: res.outcome.value.accounts.map((a) => ({
        account: a.accountId,
        missing: a.missingDeviceIds,
        stale: a.staleDeviceIds,
        extra: a.extraDeviceIds,
        version: a.currentVersion,
      })),
    };
  return { other: res.outcome.case };
}

describe("Send's device-list check", () => {
  it("answers the same with the lists in memory (quick check) as with reading them (general check)", async () => {
    const deviceIds = fc.uniqueArray(fc.integer({ min: 1, max: 6 }), { maxLength: 4 }).map((ids) => ids.sort((a, b) => a - b));
    // Most devices have prekeys; some listed ones may not (then leaving them out is no mismatch).
    const noPrekeys = fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.subarray([1, 2, 3, 4, 5, 6], { maxLength: 2 }) });
    const account = fc.record({ ids: deviceIds, next: fc.integer({ min: 1, max: 8 }), noPrekeys });
    const scenario = fc.record({
      accounts: fc.tuple(account, account, fc.option(account, { nil: undefined })),
      senderDevice: fc.integer({ min: 1, max: 6 }),
      // Exactly what the lists say (the sender listed: the common Send), one device left out,
      // one added (stale, extra or of an unknown account), or anything.
      mode: fc.constantFrom("exact", "drop", "add", "random"),
      pick: fc.nat(),
      // Entries: (account index, device id) pairs, unique.
      entries: fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 7 })), {
        minLength: 1,
        maxLength: 8,
        selector: ([a, d]) => `${a}/${d}`,
      }),
    });
    let agreed = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async ({ accounts, senderDevice: chosen, mode, pick, entries }) => {
        lists.clear();
        withoutPrekeys.clear();
        accounts.forEach((a, i) => {
          if (!a) return; // the third account does not exist
          lists.set(ACCOUNTS[i], { version: BigInt(i + 1), deviceIds: a.ids, nextDeviceId: Math.max(a.next, ...a.ids.map((id) => id + 1)) });
          for (const d of a.noPrekeys) withoutPrekeys.add(`${ACCOUNTS[i]}/${d}`);
        });
        const senderDevice = mode !== "random" && accounts[0].ids.length ? accounts[0].ids[0] : chosen;
        const listed = accounts.flatMap((a, i) => (a && i < 2 ? a.ids.map((d) => [i, d] as [number, number]) : []));
        const addressed = listed.filter(([a, d]) => !(a === 0 && d === senderDevice));
        if (mode === "drop" && addressed.length) addressed.splice(pick % addressed.length, 1);
        if (mode === "add") {
          const extra = entries.find(([a, d]) => !listed.some(([x, y]) => x === a && y === d));
          if (extra) addressed.push(extra);
        }
        const targets = (mode === "random" ? entries : addressed)
          .map(([a, d]) => ({ accountId: ACCOUNTS[a], deviceId: d }))
          .filter((t) => !(t.accountId === ACCOUNTS[0] && t.deviceId === senderDevice));
        if (!targets.length) return;
        const req = { messageId: newMessageId(), sharedBody: bytes("list check"), entries: entriesFor(targets) };
        const before = reads.quick;
        const viaQuick = await answer(quick(ACCOUNTS[0], senderDevice), req);
        const viaGeneral = await answer(general(ACCOUNTS[0], senderDevice), { ...req, messageId: newMessageId() });
        expect(viaQuick).toEqual(viaGeneral);
        // What the quick check settles is a Stored answer, and the instance read nothing for it.
        if (
          listsAgree(
            { accountId: ACCOUNTS[0], deviceId: senderDevice },
            targets.map((device) => ({ device })),
            (a) => lists.get(a),
            true,
          )
        ) {
          agreed++;
          expect(viaGeneral).toHaveProperty("stored");
          expect(reads.quick).toBe(before);
        }
      }),
      { numRuns: RUNS },
    );
    // The quick path was taken (not every case fell through to the general check).
    expect(agreed).toBeGreaterThan(0);
  });
});
