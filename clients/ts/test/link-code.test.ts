/**
 * Link codes against conformance/vectors/key-signatures.json: the recorded code verifies
 * until its expiry and not after; a moved expiry, a missing one, a code claiming more than
 * an hour, and one for another account are refused; and the chain check refuses keys the
 * account's history ever listed (linked, or revoked since).
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { LinkCodeSchema } from "@sealpost/gen/sealpost/envelope/v1/link_code_pb.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { checkNeverLinked, linkCodeSignedBytes, MAX_LINK_CODE_TTL_MS, readLinkCode } from "../src/directory/link-code.js";
import { createFirstDeviceList, generateDeviceKeys, linkDeviceChange, revokeDeviceChange } from "../src/directory/device-list-changes.js";

const vectors = JSON.parse(readFileSync(new URL("../../../conformance/vectors/key-signatures.json", import.meta.url), "utf8"));
const v = vectors.link_code as { account_id: string; name: string; expires_at_ms: number; signed_bytes: string; signature: string; code_base64: string };
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe.each([
  ["node", createNodeProvider()],
  ["noble", createNobleProvider()],
] as const)("link codes (%s provider)", (_name, p) => {
  it("the vector's code verifies until it expires, with the recorded signed bytes", async () => {
    const link = await readLinkCode(p, v.code_base64, v.account_id, v.expires_at_ms - 1);
    expect(hex(linkCodeSignedBytes(link))).toBe(v.signed_bytes);
    expect(hex(link.signature)).toBe(v.signature);
    await expect(readLinkCode(p, v.code_base64, v.account_id, v.expires_at_ms)).rejects.toThrow(/expired/);
    await expect(readLinkCode(p, v.code_base64, "bob", v.expires_at_ms - 1)).rejects.toThrow(/for account alice, not bob/);
    await expect(readLinkCode(p, v.code_base64, v.account_id, v.expires_at_ms - MAX_LINK_CODE_TTL_MS - 1)).rejects.toThrow(/more than an hour/);
  });

  it("a moved expiry, or none, is refused", async () => {
    const link = fromBinary(LinkCodeSchema, Buffer.from(v.code_base64, "base64"));
    const moved = Buffer.from(toBinary(LinkCodeSchema, create(LinkCodeSchema, { ...link, expiresAtMs: link.expiresAtMs + 3_600_000n }))).toString("base64");
    await expect(readLinkCode(p, moved, v.account_id, v.expires_at_ms - 1)).rejects.toThrow(/signature does not verify/);
    const none = Buffer.from(toBinary(LinkCodeSchema, create(LinkCodeSchema, { ...link, expiresAtMs: 0n, signature: new Uint8Array() }))).toString("base64");
    await expect(readLinkCode(p, none, v.account_id, v.expires_at_ms - 1)).rejects.toThrow(/no expiry/);
  });
});

describe("a code links once", () => {
  it("keys the chain lists are 'already used'; keys it listed before a revocation are refused for good", async () => {
    const p = createNodeProvider();
    const first = await generateDeviceKeys(p, "phone");
    let list = await createFirstDeviceList(p, { accountId: "alice", device: first, nowMs: 1 });
    const history = [list];
    const laptop = await generateDeviceKeys(p, "laptop");
    const signer = { deviceId: 1, signingSeed: first.signingSeed };
    const linked = await linkDeviceChange(
      p,
      list,
      signer,
      { signingKey: laptop.signingKey, dhKey: laptop.dhKey, dhKeySignature: laptop.dhKeySignature, name: "laptop" },
      2,
    );
    history.push((list = linked.deviceList));
    const code = { signingKey: laptop.signingKey, dhKey: laptop.dhKey } as Parameters<typeof checkNeverLinked>[1];
    expect(() => checkNeverLinked(history, code)).toThrow(/already used: its keys are device 2/);
    history.push((list = await revokeDeviceChange(p, list, signer, 2, 3)));
    expect(() => checkNeverLinked(history, code)).toThrow(/device 2, which was revoked/);
    const fresh = await generateDeviceKeys(p, "new laptop");
    expect(() => checkNeverLinked(history, { signingKey: fresh.signingKey, dhKey: fresh.dhKey } as Parameters<typeof checkNeverLinked>[1])).not.toThrow();
  });
});
