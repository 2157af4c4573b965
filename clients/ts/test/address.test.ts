/** The device address key, on both sides: the same format, round trips, refuses non-keys. */
import { describe, expect, it } from "vitest";
import { addressKey, parseAddressKey } from "../src/protocol/address.js";
import { addressKey as serverKey, parseAddressKey as serverParse } from "@sealpost/server";

describe("device address keys", () => {
  it("client and server build and parse the same keys", () => {
    for (const d of [
      { accountId: "alice", deviceId: 1 },
      { accountId: "a-b_c9", deviceId: 2 ** 31 - 1 },
    ]) {
      expect(addressKey(d)).toBe(`${d.accountId}.${d.deviceId}`);
      expect(serverKey(d)).toBe(addressKey(d));
      expect(parseAddressKey(addressKey(d))).toEqual(d);
      expect(serverParse(addressKey(d))).toEqual(d);
    }
    for (const bad of ["alice", ".1", "alice.", "alice.0", "alice.x", ""]) {
      expect(() => parseAddressKey(bad)).toThrow(RangeError);
      expect(() => serverParse(bad)).toThrow(RangeError);
    }
  });
});
