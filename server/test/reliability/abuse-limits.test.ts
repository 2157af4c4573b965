/**
 * Abuse limits shared by every instance (nats/window-limit.ts), on two instances of one
 * deployment: CreateAccount per caller address (the limit holds across instances), and
 * one-time prekeys per target device (past it bundles come without one: sessions still
 * start, the victim's supply is not drained). And per instance: mailbox streams one device
 * may open per minute (each replaces the last).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { startTestNats, startTestServer, createTestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../../src/server.js";
import { deliveryOf, Inbox, waitUntil } from "../delivery-helpers.js";

let nats: TestNats;
let a: RunningServer;
let b: RunningServer;
/** Made first: it counts toward this address's four accounts. */
let dora: Awaited<ReturnType<typeof createTestAccount>>;
beforeAll(async () => {
  nats = await startTestNats();
  const limits = { accountsPerAddressPerHour: 4, oneTimePrekeysPerDevicePerMinute: 3 };
  const deps = { delivery: { limits: { streamOpensPerMinute: 20 } } };
  [a, b] = await Promise.all([startTestServer(nats.url, limits, deps), startTestServer(nats.url, limits, deps)]);
  dora = await createTestAccount(a.url, "abuse-dora", { oneTimePrekeys: 1 });
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await nats?.stop();
});

describe("abuse limits across instances", () => {
  it("GetLimits reports them, so clients and operators can see what they will meet", async () => {
    const { limits } = await deliveryOf(dora.devices[0], b.url).getLimits({});
    expect({
      accounts: limits?.accountsPerAddressPerHour,
      otpk: limits?.oneTimePrekeysPerDevicePerMinute,
      streams: limits?.mailboxStreamsPerDevicePerMinute,
    }).toEqual({ accounts: 4, otpk: 3, streams: 20 });
  });

  it("limits CreateAccount per caller address across instances, and only the claims of one-time prekeys per target device", async () => {
    // Four accounts from this address (dora's and three more, on both instances); the fifth is refused on either.
    const [victim, mallory, m2] = await Promise.all([
      createTestAccount(a.url, "abuse-victim", { oneTimePrekeys: 20 }),
      createTestAccount(b.url, "abuse-mallory"),
      createTestAccount(b.url, "abuse-m2"),
    ]);
    const m3 = dora;
    for (const url of [a.url, b.url]) {
      const err = await createTestAccount(url, `abuse-extra-${url.slice(-5).replace(/\D/g, "")}`).then(
        () => undefined,
        (e) => ConnectError.from(e),
      );
      expect({ code: err?.code, message: err?.rawMessage }).toEqual({
        code: Code.ResourceExhausted,
        message: "account creation rate limit exceeded for 127.0.0.1: at most 4 accounts per hour from one address",
      });
    }
    // Three claimers (their clients talk to b, b and a) take one-time prekeys of the victim:
    // three are handed out, then bundles come without one.
    const claimers = [mallory, m2, m3];
    const bundles = [];
    for (let i = 0; i < 6; i++) bundles.push((await claimers[i % 3].devices[0].directory.claimKeyBundles({ accountId: victim.accountId })).bundles[0]);
    expect(bundles.map((x) => x.oneTimePrekey !== undefined)).toEqual([true, true, true, false, false, false]);
    for (const x of bundles) expect(x.signedPrekey && x.kemPrekey).toBeTruthy();
    expect((await victim.devices[0].directory.getPrekeyCount({})).oneTimePrekeyCount).toBe(17);
    // Another device's supply is its own window.
    expect((await victim.devices[0].directory.claimKeyBundles({ accountId: mallory.accountId })).bundles[0].oneTimePrekey).toBeDefined();
  });

  it("bounds how fast one device opens mailbox streams (each replaces the last): past the limit RESOURCE_EXHAUSTED, and the device's last stream is intact", async () => {
    const inboxes = Array.from({ length: 25 }, () => new Inbox(deliveryOf(dora.devices[0], a.url)));
    await Promise.all(inboxes.map((i) => waitUntil("an answer", () => i.ended || i.drained)));
    const refused = inboxes.filter((i) => i.error?.code === Code.ResourceExhausted);
    expect(refused).toHaveLength(5);
    expect(refused[0].error?.rawMessage).toMatch(
      /^stream rate limit exceeded for device abuse-dora\/1: at most 20 mailbox streams \(Receive, or receive on a Session\) per minute; retry in \d+ s$/,
    );
    // Of the 20 admitted, all but the newest end Replaced; the newest still delivers.
    const admitted = inboxes.filter((i) => !refused.includes(i));
    await waitUntil("19 replaced", () => admitted.filter((i) => i.replaced).length === 19);
    const live = admitted.find((i) => !i.replaced)!;
    expect({ ended: live.ended, drained: live.drained }).toEqual({ ended: false, drained: true });
    await Promise.all(inboxes.map((i) => i.close()));
  });
});
