/**
 * Each device's current signed X25519 prekey and signed ML-KEM prekey, in sp_prekeys under
 * <account>.<device>, stored as a KeyBundle with only those two fields set. Updates are
 * read-modify-write with revision CAS so concurrent uploads of one device cannot lose a field.
 */
import { addressKey } from "../device-address.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { KeyBundleSchema, type KemPrekey, type SignedPrekey } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import type { DeviceIdentity } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { KEY_BYTES, MLKEM768_PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from "./limits.js";
import { KEM_PREKEY_LABEL, SIGNED_PREKEY_LABEL, ed25519Verify, prekeySignedBytes } from "./signatures.js";
import { isWrongSequence } from "./device-list-store.js";

export interface DevicePrekeys {
  signedPrekey?: SignedPrekey;
  kemPrekey?: KemPrekey;
}

export function checkSignedPrekey(p: SignedPrekey, identity: DeviceIdentity, field = "signed_prekey"): void {
  if (p.keyId < 1) throw new ConnectError(`${field}.key_id must be at least 1`, Code.InvalidArgument);
  if (p.publicKey.length !== KEY_BYTES)
    throw new ConnectError(`${field}.public_key must be ${KEY_BYTES} bytes (X25519), got ${p.publicKey.length}`, Code.InvalidArgument);
  if (p.signature.length !== SIGNATURE_BYTES)
    throw new ConnectError(`${field}.signature must be ${SIGNATURE_BYTES} bytes, got ${p.signature.length}`, Code.InvalidArgument);
  if (!ed25519Verify(identity.signingKey, prekeySignedBytes(SIGNED_PREKEY_LABEL, p.keyId, p.publicKey), p.signature)) {
    throw new ConnectError(`${field}.signature does not verify under device ${identity.deviceId}'s signing key`, Code.InvalidArgument);
  }
}

export function checkKemPrekey(p: KemPrekey, identity: DeviceIdentity, field = "kem_prekey"): void {
  if (p.keyId < 1) throw new ConnectError(`${field}.key_id must be at least 1`, Code.InvalidArgument);
  if (p.publicKey.length !== MLKEM768_PUBLIC_KEY_BYTES) {
    throw new ConnectError(`${field}.public_key must be ${MLKEM768_PUBLIC_KEY_BYTES} bytes (ML-KEM-768), got ${p.publicKey.length}`, Code.InvalidArgument);
  }
  if (p.signature.length !== SIGNATURE_BYTES)
    throw new ConnectError(`${field}.signature must be ${SIGNATURE_BYTES} bytes, got ${p.signature.length}`, Code.InvalidArgument);
  if (!ed25519Verify(identity.signingKey, prekeySignedBytes(KEM_PREKEY_LABEL, p.keyId, p.publicKey), p.signature)) {
    throw new ConnectError(`${field}.signature does not verify under device ${identity.deviceId}'s signing key`, Code.InvalidArgument);
  }
}

export class PrekeyStore {
  constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly bucket: string,
  ) {}

  async get(accountId: string, deviceId: number): Promise<DevicePrekeys> {
    const e = await this.kv.get(key(accountId, deviceId));
    if (e?.operation !== "PUT" || e.value.length === 0) return {};
    const b = fromBinary(KeyBundleSchema, e.value);
    return { signedPrekey: b.signedPrekey, kemPrekey: b.kemPrekey };
  }

  /** Replaces whichever of the two keys `update` sets. */
  async put(accountId: string, deviceId: number, update: DevicePrekeys): Promise<void> {
    const k = key(accountId, deviceId);
    for (let attempt = 0; ; attempt++) {
      const e = await this.kv.get(k);
      const live = e && e.operation === "PUT" && e.value.length > 0;
      const old = live ? fromBinary(KeyBundleSchema, e.value) : create(KeyBundleSchema);
      const merged = create(KeyBundleSchema, {
        signedPrekey: update.signedPrekey ?? old.signedPrekey,
        kemPrekey: update.kemPrekey ?? old.kemPrekey,
      });
      const bytes = toBinary(KeyBundleSchema, merged);
      try {
        if (e) await this.kv.update(k, bytes, e.revision);
        else await this.kv.create(k, bytes);
        return;
      } catch (err) {
        // Another upload of the same device won; merge onto its value.
        if (!isWrongSequence(err) || attempt >= 10) throw err;
      }
    }
  }

  /** Removes a revoked device's prekeys without leaving a tombstone behind. */
  async purgeDevice(accountId: string, deviceId: number): Promise<void> {
    await this.jsm.streams.purge(`KV_${this.bucket}`, { filter: `$KV.${this.bucket}.${key(accountId, deviceId)}` });
  }
}

const key = (accountId: string, deviceId: number) => addressKey({ accountId, deviceId });
