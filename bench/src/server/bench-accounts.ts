/**
 * Many single-device accounts, quickly: CreateAccount, GetAuthChallenge and Authenticate over
 * a few shared HTTP/2 connections (test-support's createTestAccount opens connections per
 * device, too many for 10k devices). One ML-KEM key pair serves every account's KEM prekey
 * (each device still signs it); no one-time prekeys. The benchmark needs tokens, not sessions.
 */
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { concatBytes, u32be, utf8, type CryptoProvider } from "@sealpost/client/crypto";
import { authSignedBytes, createFirstDeviceList, generateDeviceKeys } from "@sealpost/client/directory";
import { DirectoryService, SealedAccessMode } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { KemPrekeySchema, SignedPrekeySchema } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { connections, type Pool } from "./connections.js";

export interface BenchDevice {
  accountId: string;
  deviceId: number;
  /** `{ authorization: "Bearer ..." }` */
  headers: Record<string, string>;
}

const SIGNED_PREKEY_LABEL = utf8("sealpost.signed-prekey.v1");
const KEM_PREKEY_LABEL = utf8("sealpost.kem-prekey.v1");

/** Creates `count` accounts `<prefix>-<i>` with `concurrency` calls in flight. */
export async function createBenchDevices(provider: CryptoProvider, baseUrl: string, prefix: string, count: number, concurrency = 32): Promise<BenchDevice[]> {
  const pool: Pool<Client<typeof DirectoryService>> = connections(baseUrl, 4, (t) => createClient(DirectoryService, t));
  const kem = provider.mlKemKeygen(provider.random(64));
  const out: BenchDevice[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const dir = pool.next();
      const accountId = `${prefix}-${i}`;
      const keys = await generateDeviceKeys(provider, "bench");
      const spPriv = provider.random(32);
      const spPub = await provider.x25519PublicKey(spPriv);
      const deviceList = await createFirstDeviceList(provider, { accountId, device: keys, nowMs: Date.now() });
      const res = await dir.createAccount({
        deviceList,
        signedPrekey: create(SignedPrekeySchema, {
          keyId: 1,
          publicKey: spPub,
          signature: await provider.ed25519Sign(keys.signingSeed, concatBytes(SIGNED_PREKEY_LABEL, u32be(1), spPub)),
        }),
        kemPrekey: create(KemPrekeySchema, {
          keyId: 1,
          publicKey: kem.publicKey,
          signature: await provider.ed25519Sign(keys.signingSeed, concatBytes(KEM_PREKEY_LABEL, u32be(1), kem.publicKey)),
        }),
      });
      const device = { accountId, deviceId: res.device!.deviceId };
      const { nonce } = await dir.getAuthChallenge({ device });
      const auth = await dir.authenticate({
        device,
        nonce,
        signature: await provider.ed25519Sign(keys.signingSeed, authSignedBytes(accountId, device.deviceId, nonce)),
      });
      out[i] = { ...device, headers: { authorization: `Bearer ${auth.token}` } };
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  pool.close();
  return out;
}

/** Lets sealed mail with `accessKey` into each device's account (SetSealedAccess CONTACTS with its SHA-256). */
export async function allowSealedMail(provider: CryptoProvider, baseUrl: string, devices: BenchDevice[], accessKey: Uint8Array): Promise<void> {
  const pool: Pool<Client<typeof DirectoryService>> = connections(baseUrl, 4, (t) => createClient(DirectoryService, t));
  try {
    const digest = provider.sha256(accessKey);
    for (const d of devices) await pool.next().setSealedAccess({ mode: SealedAccessMode.CONTACTS, accessKeySha256: digest }, { headers: d.headers });
  } finally {
    pool.close();
  }
}
