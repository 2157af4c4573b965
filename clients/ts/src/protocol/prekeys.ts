/**
 * Prekeys (proto/sealpost/directory/v1/prekeys.proto): the signed X25519 prekey, the signed
 * ML-KEM-768 prekey and one-time X25519 prekeys; their signatures; bundle verification.
 */
import { create } from "@bufbuild/protobuf";
import {
  KemPrekeySchema,
  OneTimePrekeySchema,
  SignedPrekeySchema,
  type KemPrekey,
  type KeyBundle,
  type OneTimePrekey,
  type SignedPrekey,
} from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { bytesEqual, concatBytes, u32be } from "../crypto/bytes.js";
import { InvalidKeyError, InvalidSignatureError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { MLKEM768_PUBLIC_KEY_BYTES } from "../crypto/provider.js";
import { verifyDhKeySignature, type LocalIdentity, type RemoteIdentity } from "./identity.js";
import { KEM_PREKEY_LABEL, SIGNED_PREKEY_LABEL } from "./labels.js";

/** A private X25519 prekey (signed or one-time) as stored on the device. */
export interface X25519PrekeyRecord {
  keyId: number;
  privateKey: Uint8Array;
  publicKey: Uint8Array;
  /** Ed25519 signature (signed prekeys only). */
  signature?: Uint8Array;
  createdAtMs: number;
}

/** A private ML-KEM-768 prekey as stored on the device. */
export interface KemPrekeyRecord {
  keyId: number;
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  signature: Uint8Array;
  createdAtMs: number;
}

/** Bytes signed for a prekey: label || u32be(key_id) || public_key. */
export function prekeySignedBytes(label: Uint8Array, keyId: number, publicKey: Uint8Array): Uint8Array {
  return concatBytes(label, u32be(keyId), publicKey);
}

/** A signed prekey: 32 random bytes for the private key. */
export async function generateSignedPrekey(provider: CryptoProvider, identity: LocalIdentity, keyId: number, nowMs: number): Promise<X25519PrekeyRecord> {
  const privateKey = provider.random(32);
  const publicKey = await provider.x25519PublicKey(privateKey);
  const signature = await provider.ed25519Sign(identity.signingSeed, prekeySignedBytes(SIGNED_PREKEY_LABEL, keyId, publicKey));
  return { keyId, privateKey, publicKey, signature, createdAtMs: nowMs };
}

/** A signed ML-KEM-768 prekey: 64 random bytes (d || z) for FIPS 203 key generation. */
export async function generateKemPrekey(provider: CryptoProvider, identity: LocalIdentity, keyId: number, nowMs: number): Promise<KemPrekeyRecord> {
  const seed = provider.random(64);
  const { publicKey, secretKey } = provider.mlKemKeygen(seed);
  seed.fill(0);
  const signature = await provider.ed25519Sign(identity.signingSeed, prekeySignedBytes(KEM_PREKEY_LABEL, keyId, publicKey));
  return { keyId, secretKey, publicKey, signature, createdAtMs: nowMs };
}

/** `count` one-time prekeys with ids firstId, firstId+1, ... (32 random bytes each). */
export async function generateOneTimePrekeys(provider: CryptoProvider, firstId: number, count: number, nowMs: number): Promise<X25519PrekeyRecord[]> {
  const out: X25519PrekeyRecord[] = [];
  for (let i = 0; i < count; i++) {
    const privateKey = provider.random(32);
    out.push({ keyId: firstId + i, privateKey, publicKey: await provider.x25519PublicKey(privateKey), createdAtMs: nowMs });
  }
  return out;
}

export function toSignedPrekey(r: X25519PrekeyRecord): SignedPrekey {
  return create(SignedPrekeySchema, { keyId: r.keyId, publicKey: r.publicKey, signature: r.signature ?? new Uint8Array(0) });
}

export function toKemPrekey(r: KemPrekeyRecord): KemPrekey {
  return create(KemPrekeySchema, { keyId: r.keyId, publicKey: r.publicKey, signature: r.signature });
}

export function toOneTimePrekey(r: X25519PrekeyRecord): OneTimePrekey {
  return create(OneTimePrekeySchema, { keyId: r.keyId, publicKey: r.publicKey });
}

/** A key bundle whose signatures were all checked. */
export interface VerifiedBundle {
  identity: RemoteIdentity;
  signedPrekey: { keyId: number; publicKey: Uint8Array };
  kemPrekey: { keyId: number; publicKey: Uint8Array };
  oneTimePrekey?: { keyId: number; publicKey: Uint8Array };
}

/**
 * Checks every signature and size in a KeyBundle: dh_key_signature, the signed prekey's and
 * the KEM prekey's. Throws InvalidSignatureError / InvalidKeyError; never returns a partial
 * result. When `trusted` (an identity recorded from a verified device list) equals the
 * bundle's identity, dh_key_signature was already verified and is not checked again.
 */
export async function verifyKeyBundle(provider: CryptoProvider, bundle: KeyBundle, trusted?: RemoteIdentity): Promise<VerifiedBundle> {
  const id = bundle.identity;
  const spk = bundle.signedPrekey;
  const kem = bundle.kemPrekey;
  if (!id || !spk || !kem) throw new InvalidKeyError("key bundle lacks identity, signed prekey or KEM prekey");
  if (id.signingKey.length !== 32 || id.dhKey.length !== 32) throw new InvalidKeyError("bundle identity keys must be 32 bytes");
  if (spk.publicKey.length !== 32) throw new InvalidKeyError("signed prekey must be 32 bytes");
  if (kem.publicKey.length !== MLKEM768_PUBLIC_KEY_BYTES) throw new InvalidKeyError("KEM prekey must be 1184 bytes");
  const known = trusted !== undefined && bytesEqual(trusted.signingKey, id.signingKey) && bytesEqual(trusted.dhKey, id.dhKey);
  if (!known && !(await verifyDhKeySignature(provider, id.signingKey, id.dhKey, id.dhKeySignature))) {
    throw new InvalidSignatureError("bundle identity: dh_key_signature does not verify");
  }
  if (!(await provider.ed25519Verify(id.signingKey, prekeySignedBytes(SIGNED_PREKEY_LABEL, spk.keyId, spk.publicKey), spk.signature))) {
    throw new InvalidSignatureError("bundle signed prekey: signature does not verify");
  }
  if (!(await provider.ed25519Verify(id.signingKey, prekeySignedBytes(KEM_PREKEY_LABEL, kem.keyId, kem.publicKey), kem.signature))) {
    throw new InvalidSignatureError("bundle KEM prekey: signature does not verify");
  }
  const otp = bundle.oneTimePrekey;
  if (otp && otp.publicKey.length !== 32) throw new InvalidKeyError("one-time prekey must be 32 bytes");
  return {
    identity: { signingKey: id.signingKey, dhKey: id.dhKey },
    signedPrekey: { keyId: spk.keyId, publicKey: spk.publicKey },
    kemPrekey: { keyId: kem.keyId, publicKey: kem.publicKey },
    oneTimePrekey: otp ? { keyId: otp.keyId, publicKey: otp.publicKey } : undefined,
  };
}
