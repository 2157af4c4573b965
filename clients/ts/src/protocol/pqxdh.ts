/**
 * PQXDH-style hybrid session setup (after Signal's "The PQXDH Key Agreement Protocol",
 * rev. 3): three or four X25519 DHs plus one ML-KEM-768 encapsulation, combined by HKDF.
 *
 *   DH1 = DH(IK_A, SPK_B)  DH2 = DH(EK_A, IK_B)  DH3 = DH(EK_A, SPK_B)  [DH4 = DH(EK_A, OPK_B)]
 *   (CT, SS) = ML-KEM-768.Encaps(PQSPK_B)
 *   SK = HKDF(ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4] || SS, salt = 32 zero bytes,
 *             info = "sealpost.pqxdh.v1" || IK_A || IK_B, L = 32)
 *
 * IK_* are the X25519 identity keys (DeviceIdentity.dh_key). docs/PROTOCOL.md, "Session setup".
 */
import { concatBytes, wipe } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { LocalIdentity } from "./identity.js";
import { PQXDH_LABEL } from "./labels.js";
import type { VerifiedBundle } from "./prekeys.js";

const F = new Uint8Array(32).fill(0xff);
const EMPTY = new Uint8Array(0);

/** What the initiator learns and must send in its PrekeyMessage. */
export interface PqxdhInitiation {
  /** SK, the initial root key. Secret. */
  sharedSecret: Uint8Array;
  /** EK_A public. */
  baseKey: Uint8Array;
  kemCiphertext: Uint8Array;
  signedPrekeyId: number;
  kemPrekeyId: number;
  oneTimePrekeyId?: number;
}

/** The session secret from the DH outputs and the KEM secret (wipes its inputs). */
export async function deriveSessionSecret(
  provider: CryptoProvider,
  dhOutputs: Uint8Array[],
  kemSecret: Uint8Array,
  initiatorIdentityDh: Uint8Array,
  responderIdentityDh: Uint8Array,
): Promise<Uint8Array> {
  const ikm = concatBytes(F, ...dhOutputs, kemSecret);
  const sk = await provider.hkdf(ikm, EMPTY, concatBytes(PQXDH_LABEL, initiatorIdentityDh, responderIdentityDh), 32);
  wipe(ikm, kemSecret, ...dhOutputs);
  return sk;
}

/**
 * Initiator side against a verified bundle. Draws 32 random bytes for EK_A, then 32 for the
 * ML-KEM encapsulation randomness m. Returns the base key's private half for nobody: it is
 * wiped here.
 */
export async function pqxdhInitiate(provider: CryptoProvider, local: LocalIdentity, bundle: VerifiedBundle): Promise<PqxdhInitiation> {
  const ekPrivate = provider.random(32);
  const m = provider.random(32);
  const baseKey = await provider.x25519PublicKey(ekPrivate);
  const agreements = [
    provider.x25519(local.dhPrivateKey, bundle.signedPrekey.publicKey),
    provider.x25519(ekPrivate, bundle.identity.dhKey),
    provider.x25519(ekPrivate, bundle.signedPrekey.publicKey),
  ];
  if (bundle.oneTimePrekey) agreements.push(provider.x25519(ekPrivate, bundle.oneTimePrekey.publicKey));
  const dhs = await Promise.all(agreements);
  const { ciphertext, sharedSecret: ss } = provider.mlKemEncapsulate(bundle.kemPrekey.publicKey, m);
  wipe(ekPrivate, m);
  return {
    sharedSecret: await deriveSessionSecret(provider, dhs, ss, local.dhKey, bundle.identity.dhKey),
    baseKey,
    kemCiphertext: ciphertext,
    signedPrekeyId: bundle.signedPrekey.keyId,
    kemPrekeyId: bundle.kemPrekey.keyId,
    oneTimePrekeyId: bundle.oneTimePrekey?.keyId,
  };
}

/** Responder side: the same SK from the private halves named by the PrekeyMessage. */
export async function pqxdhRespond(
  provider: CryptoProvider,
  local: LocalIdentity,
  initiatorIdentityDh: Uint8Array,
  baseKey: Uint8Array,
  signedPrekeyPrivate: Uint8Array,
  oneTimePrekeyPrivate: Uint8Array | undefined,
  kemSecretKey: Uint8Array,
  kemCiphertext: Uint8Array,
): Promise<Uint8Array> {
  const agreements = [
    provider.x25519(signedPrekeyPrivate, initiatorIdentityDh),
    provider.x25519(local.dhPrivateKey, baseKey),
    provider.x25519(signedPrekeyPrivate, baseKey),
  ];
  if (oneTimePrekeyPrivate) agreements.push(provider.x25519(oneTimePrekeyPrivate, baseKey));
  const dhs = await Promise.all(agreements);
  const ss = provider.mlKemDecapsulate(kemCiphertext, kemSecretKey);
  return deriveSessionSecret(provider, dhs, ss, initiatorIdentityDh, local.dhKey);
}
