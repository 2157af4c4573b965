/**
 * The JavaScript KDF_CK (crypto/hmac-chain-step.ts) against HMAC-SHA256 from Python's hmac
 * module (fixed answers below), node:crypto and @noble/hashes over many keys.
 */
import { createHmac } from "node:crypto";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../src/crypto/bytes.js";
import { createDeterministicRandom } from "../src/crypto/index.js";
import { hmacChainStep } from "../src/crypto/hmac-chain-step.js";

describe("hmacChainStep", () => {
  it("matches HMAC-SHA256(ck, 0x01) and (ck, 0x02) computed by Python's hmac module", () => {
    // python3 -c "import hmac,hashlib; print(hmac.new(bytes(range(32)), b'\x01', hashlib.sha256).hexdigest())"
    const counting = hmacChainStep(Uint8Array.from({ length: 32 }, (_, i) => i));
    expect(toHex(counting.messageKey)).toBe("9b4c8120a4823a95f47cde17a244f4507244ee6e3957d1fab9fa29b44d3829b7");
    expect(toHex(counting.chainKey)).toBe("4304c22c84a53755ab08ead8d97a8d429be5efa480682d7ad1da27f73e1fbe1d");
    const ones = hmacChainStep(new Uint8Array(32).fill(0xff));
    expect(toHex(ones.messageKey)).toBe("85d3b07ddafe78925cb78c64e84fae54c2842034d0b88cc6d69fb8d106e3ffc8");
    expect(toHex(ones.chainKey)).toBe("f21767e18ea6050576c7222650864a19ed941c938265abd255ac79beefa04546");
  });

  it("agrees with node:crypto and @noble/hashes on 1,000 keys, and along a chain", () => {
    const random = createDeterministicRandom(fromHex("00".repeat(31) + "2a"));
    const keys = [new Uint8Array(32), ...Array.from({ length: 999 }, () => random(32))];
    for (const key of keys) {
      const before = key.slice();
      const step = hmacChainStep(key);
      expect(key).toEqual(before); // the chain key is read, not changed
      expect(toHex(step.messageKey)).toBe(createHmac("sha256", key).update(Uint8Array.of(1)).digest("hex"));
      expect(toHex(step.chainKey)).toBe(toHex(hmac(sha256, key, Uint8Array.of(2))));
    }
    let ck = keys[1];
    for (let i = 0; i < 100; i++) {
      const step = hmacChainStep(ck);
      expect(step.messageKey).toEqual(new Uint8Array(createHmac("sha256", ck).update(Uint8Array.of(1)).digest()));
      expect(step.chainKey).not.toBe(ck);
      ck = step.chainKey;
    }
    expect(toHex(ck)).toBe(toHex(chainByNode(keys[1], 100)));
  });

  it("refuses a chain key that is not 32 bytes", () => {
    expect(() => hmacChainStep(new Uint8Array(31))).toThrow(RangeError);
    expect(() => hmacChainStep(new Uint8Array(64))).toThrow(RangeError);
  });
});

function chainByNode(ck: Uint8Array, steps: number): Uint8Array {
  let key = ck;
  for (let i = 0; i < steps; i++) key = new Uint8Array(createHmac("sha256", key).update(Uint8Array.of(2)).digest());
  return key;
}
