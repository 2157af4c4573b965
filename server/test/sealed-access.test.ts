/** Who may send an account sealed mail: the rule over its current devices' settings. */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { SealedAccessMode } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { sealedSendAllowed, type DeviceAccess } from "../src/directory/sealed-access.js";

const key = new Uint8Array(16).fill(1);
const digest = (k: Uint8Array) => new Uint8Array(createHash("sha256").update(k).digest());
const access = (entries: [number, DeviceAccess][]) => new Map(entries);

describe("sealedSendAllowed", () => {
  it("a CONTACTS device lets in exactly its key", () => {
    const a = access([[1, { mode: SealedAccessMode.CONTACTS, keySha256: digest(key) }]]);
    expect(sealedSendAllowed(a, [1], key)).toBe(true);
    expect(sealedSendAllowed(a, [1], new Uint8Array(16).fill(2))).toBe(false);
    expect(sealedSendAllowed(a, [1], new Uint8Array(0))).toBe(false);
  });

  it("an ANYONE device lets in any key, also none; DISABLED and unset let in nothing", () => {
    expect(sealedSendAllowed(access([[1, { mode: SealedAccessMode.ANYONE }]]), [1], new Uint8Array(0))).toBe(true);
    expect(sealedSendAllowed(access([[1, { mode: SealedAccessMode.DISABLED }]]), [1], key)).toBe(false);
    expect(sealedSendAllowed(access([]), [1], key)).toBe(false);
  });

  it("only current devices count: a revoked device's setting is gone with it", () => {
    const a = access([[2, { mode: SealedAccessMode.ANYONE }]]);
    expect(sealedSendAllowed(a, [1], key)).toBe(false);
    expect(sealedSendAllowed(a, [1, 2], key)).toBe(true);
  });

  it("any current device allowing is enough (the most permissive one decides)", () => {
    const a = access([
      [1, { mode: SealedAccessMode.DISABLED }],
      [2, { mode: SealedAccessMode.CONTACTS, keySha256: digest(key) }],
    ]);
    expect(sealedSendAllowed(a, [1, 2], key)).toBe(true);
  });
});
