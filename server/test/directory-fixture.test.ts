/**
 * The shared test fixture (test-support/src/accounts.ts) against a real server: accounts with
 * several devices, tokens that work, prekeys uploaded.
 */
import { describe, expect, it } from "vitest";
import { createTestAccount, useTestServer } from "@sealpost/test-support";

const server = useTestServer();

describe("createTestAccount", () => {
  it("creates an account with linked, authenticated devices that have prekeys", async () => {
    const acct = await createTestAccount(server.url, "fixture-alice", { devices: 3, oneTimePrekeys: 5 });
    expect(acct.devices.map((d) => d.address)).toEqual([1, 2, 3].map((deviceId) => ({ accountId: "fixture-alice", deviceId })));
    for (const d of acct.devices) {
      const count = await d.directory.getPrekeyCount({});
      expect(count).toMatchObject({ oneTimePrekeyCount: 5, signedPrekeyId: 1, kemPrekeyId: 1 });
    }
    const list = await acct.devices[1].directory.getDeviceList({ accountId: "fixture-alice" });
    expect(list.deviceList?.deviceList).toEqual(acct.deviceList.deviceList);
  });
});
