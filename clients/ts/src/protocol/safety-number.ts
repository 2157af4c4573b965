/**
 * Safety numbers: 60 digits two people compare (in person or over a trusted channel) to
 * check that no one substituted a device key. After Signal's NumericFingerprintGenerator,
 * but over every device identity of an account:
 *
 *   keys  = for each device, sorted by signing_key bytes: signing_key (32) || dh_key (32)
 *   h_0   = SHA-512("sealpost.safety-number.v1" || u32be(len(account_id)) || account_id
 *                   || u32be(device count) || keys)
 *   h_i   = SHA-512(h_{i-1} || keys), i = 1 .. 5199
 *   fingerprint = the first 30 bytes of h_5199 in six 5-byte groups, each read as a
 *                 big-endian integer mod 100000 and written as 5 decimal digits (30 digits)
 *   safety number = the two accounts' fingerprints sorted as strings and concatenated
 *
 * docs/PROTOCOL.md, "Safety numbers".
 */
import { concatBytes, u32be, utf8 } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { SAFETY_NUMBER_LABEL } from "./labels.js";

export const SAFETY_NUMBER_ITERATIONS = 5200;

export interface FingerprintDevice {
  signingKey: Uint8Array;
  dhKey: Uint8Array;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** The 30-digit fingerprint of one account's set of device identity keys. */
export function accountFingerprint(provider: CryptoProvider, accountId: string, devices: FingerprintDevice[]): string {
  const sorted = [...devices].sort((a, b) => compareBytes(a.signingKey, b.signingKey));
  const keys = concatBytes(...sorted.flatMap((d) => [d.signingKey, d.dhKey]));
  const id = utf8(accountId);
  let h = provider.sha512(concatBytes(SAFETY_NUMBER_LABEL, u32be(id.length), id, u32be(sorted.length), keys));
  const buf = new Uint8Array(64 + keys.length);
  buf.set(keys, 64);
  for (let i = 1; i < SAFETY_NUMBER_ITERATIONS; i++) {
    buf.set(h, 0);
    h = provider.sha512(buf);
  }
  let digits = "";
  for (let g = 0; g < 6; g++) {
    let v = 0;
    for (let j = 0; j < 5; j++) v = v * 256 + h[g * 5 + j];
    digits += String(v % 100000).padStart(5, "0");
  }
  return digits;
}

/** The 60-digit safety number of two accounts; both sides compute the same string. */
export function safetyNumber(
  provider: CryptoProvider,
  a: { accountId: string; devices: FingerprintDevice[] },
  b: { accountId: string; devices: FingerprintDevice[] },
): string {
  const fa = accountFingerprint(provider, a.accountId, a.devices);
  const fb = accountFingerprint(provider, b.accountId, b.devices);
  return fa < fb ? fa + fb : fb + fa;
}

/** Groups of five digits for display. */
export function formatSafetyNumber(digits: string): string {
  return digits.match(/.{1,5}/g)?.join(" ") ?? "";
}
