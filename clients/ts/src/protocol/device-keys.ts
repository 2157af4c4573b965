/**
 * Device key management for the Messenger: create the device identity, and make prekey
 * batches (private halves into the stores, public halves as an UploadPrekeysRequest).
 */
import { create } from "@bufbuild/protobuf";
import { UploadPrekeysRequestSchema, type UploadPrekeysRequest } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { DeviceIdentity } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { NoSessionError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { ProtocolStores } from "./stores.js";
import { generateLocalIdentity, toDeviceIdentity, type LocalIdentity } from "./identity.js";
import { generateKemPrekey, generateOneTimePrekeys, generateSignedPrekey, toKemPrekey, toOneTimePrekey, toSignedPrekey } from "./prekeys.js";

/** Creates and stores this device's identity; returns it and its public DeviceIdentity. */
export async function createDeviceIdentity(
  provider: CryptoProvider,
  stores: ProtocolStores,
  deviceId: number,
  name: string,
  nowMs: number,
): Promise<{ identity: LocalIdentity; publicIdentity: DeviceIdentity }> {
  const identity = await generateLocalIdentity(provider, deviceId);
  await stores.identity.setLocalIdentity(identity);
  return { identity, publicIdentity: toDeviceIdentity(identity, name, BigInt(nowMs)) };
}

export interface PrekeyBatchOptions {
  /** Make a new signed X25519 prekey with this id. */
  signedPrekeyId?: number;
  /** Make a new signed ML-KEM-768 prekey with this id. */
  kemPrekeyId?: number;
  /** Make `oneTimeCount` one-time prekeys with ids starting here. */
  oneTimeFirstId?: number;
  oneTimeCount?: number;
  nowMs: number;
}

/**
 * Generates the requested prekeys, stores the private halves and returns the public upload.
 * Random bytes are drawn in this order: signed prekey, KEM prekey, one-time prekeys.
 */
export async function generatePrekeyBatch(provider: CryptoProvider, stores: ProtocolStores, options: PrekeyBatchOptions): Promise<UploadPrekeysRequest> {
  const identity = await stores.identity.getLocalIdentity();
  if (!identity) throw new NoSessionError("no local identity in the identity store");
  const request = create(UploadPrekeysRequestSchema, {});
  if (options.signedPrekeyId !== undefined) {
    const spk = await generateSignedPrekey(provider, identity, options.signedPrekeyId, options.nowMs);
    await stores.signedPrekeys.save(spk.keyId, spk);
    request.signedPrekey = toSignedPrekey(spk);
  }
  if (options.kemPrekeyId !== undefined) {
    const kem = await generateKemPrekey(provider, identity, options.kemPrekeyId, options.nowMs);
    await stores.kemPrekeys.save(kem.keyId, kem);
    request.kemPrekey = toKemPrekey(kem);
  }
  if (options.oneTimeCount && options.oneTimeCount > 0) {
    const otps = await generateOneTimePrekeys(provider, options.oneTimeFirstId ?? 1, options.oneTimeCount, options.nowMs);
    for (const k of otps) await stores.oneTimePrekeys.save(k.keyId, k);
    request.oneTimePrekeys = otps.map(toOneTimePrekey);
  }
  return request;
}
