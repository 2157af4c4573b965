/**
 * Link codes: what a new device shows so an existing device of the account can link it
 * (docs/PROTOCOL.md, "Linking"). A code expires (LINK_CODE_TTL_MS after it was made, signed
 * by the new device so the expiry cannot be moved) and is used once: an existing device
 * refuses keys its account's verified chain already holds (linked) or once held (revoked),
 * so a revoked device can never come back with its old keys.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { LinkCodeSchema, type LinkCode } from "@sealpost/gen/sealpost/envelope/v1/link_code_pb.js";
import type { SignedDeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { bytesEqual, concatBytes, fromBase64, toBase64 } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { MessengerError } from "../core/messenger-errors.js";
import { verifyDhKeySignature } from "../protocol/identity.js";
import { parseDeviceList } from "./device-list-changes.js";

/** How long a code made now is valid. */
export const LINK_CODE_TTL_MS = 10 * 60_000;
/** Codes claiming a longer life are refused (a code is meant to be used at once). */
export const MAX_LINK_CODE_TTL_MS = 60 * 60_000;

const LABEL = new TextEncoder().encode("sealpost.link-code.v1");

/** The bytes the new device signs: label || u16be len || account_id || dh_key || u16be len || name || u64be expires_at_ms. */
export function linkCodeSignedBytes(c: { accountId: string; dhKey: Uint8Array; name: string; expiresAtMs: bigint }): Uint8Array {
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    const out = new Uint8Array(2 + b.length);
    new DataView(out.buffer).setUint16(0, b.length);
    out.set(b, 2);
    return out;
  };
  const exp = new Uint8Array(8);
  new DataView(exp.buffer).setBigUint64(0, c.expiresAtMs);
  return concatBytes(LABEL, str(c.accountId), c.dhKey, str(c.name), exp);
}

export interface NewDeviceKeys {
  signingSeed: Uint8Array;
  signingKey: Uint8Array;
  dhKey: Uint8Array;
  dhKeySignature: Uint8Array;
}

/** The base64 code a new device shows. */
export async function makeLinkCode(provider: CryptoProvider, keys: NewDeviceKeys, accountId: string, name: string, nowMs: number): Promise<string> {
  const expiresAtMs = BigInt(nowMs + LINK_CODE_TTL_MS);
  const signature = await provider.ed25519Sign(keys.signingSeed, linkCodeSignedBytes({ accountId, dhKey: keys.dhKey, name, expiresAtMs }));
  const code = create(LinkCodeSchema, {
    accountId,
    signingKey: keys.signingKey,
    dhKey: keys.dhKey,
    dhKeySignature: keys.dhKeySignature,
    name,
    expiresAtMs,
    signature,
  });
  return toBase64(toBinary(LinkCodeSchema, code));
}

const invalid = (message: string) => new MessengerError("link_code_invalid", message);

/** Parses and checks a code for `accountId` at `nowMs`: signatures, expiry. */
export async function readLinkCode(provider: CryptoProvider, code: string, accountId: string, nowMs: number): Promise<LinkCode> {
  let link: LinkCode;
  try {
    link = fromBinary(LinkCodeSchema, fromBase64(code.trim()));
  } catch (err) {
    throw new MessengerError("link_code_invalid", "link code does not parse", { cause: err });
  }
  if (link.accountId !== accountId) throw invalid(`link code is for account ${link.accountId}, not ${accountId}`);
  if (!(await verifyDhKeySignature(provider, link.signingKey, link.dhKey, link.dhKeySignature))) throw invalid("link code's dh_key_signature does not verify");
  if (link.expiresAtMs === 0n || link.signature.length === 0)
    throw invalid("link code has no expiry (made by an older client?); make a new code on the new device");
  if (!(await provider.ed25519Verify(link.signingKey, linkCodeSignedBytes(link), link.signature))) throw invalid("link code's signature does not verify");
  const exp = Number(link.expiresAtMs);
  if (exp <= nowMs) throw invalid(`link code expired ${new Date(exp).toISOString()}; make a new code on the new device`);
  if (exp - nowMs > MAX_LINK_CODE_TTL_MS) throw invalid("link code claims to be valid for more than an hour; make a new code on the new device");
  return link;
}

/**
 * Refuses keys the account's verified chain (every version, oldest first) already lists or
 * once listed: a code links once, and a revoked device's keys never come back.
 */
export function checkNeverLinked(history: SignedDeviceList[], link: LinkCode): void {
  for (const signed of history) {
    for (const d of parseDeviceList(signed).devices) {
      if (!bytesEqual(d.signingKey, link.signingKey) && !bytesEqual(d.dhKey, link.dhKey)) continue;
      const current = parseDeviceList(history[history.length - 1]).devices.some((c) => c.deviceId === d.deviceId);
      throw invalid(
        current
          ? `link code already used: its keys are device ${d.deviceId} of this account`
          : `link code's keys belonged to device ${d.deviceId}, which was revoked; a revoked device is never linked again (reset that device's store and make a new code there)`,
      );
    }
  }
}
