/** Test fixtures: devices with identities, prekeys and a SessionCipher. */
import type { DeviceRef } from "../src/protocol/address.js";
import { create } from "@bufbuild/protobuf";
import { KeyBundleSchema, type KeyBundle } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { ContentSchema, TextSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { CryptoProvider } from "../src/crypto/provider.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { createWebCryptoProvider } from "../src/crypto/webcrypto-provider.js";
import { createDeterministicRandom } from "../src/crypto/deterministic-random.js";
import { createDeviceIdentity, generatePrekeyBatch } from "../src/protocol/device-keys.js";
import { SessionCipher } from "../src/protocol/session-cipher.js";
import { toDeviceIdentity, type LocalIdentity } from "../src/protocol/identity.js";
import { toKemPrekey, toOneTimePrekey, toSignedPrekey } from "../src/protocol/prekeys.js";
import { addressKey } from "../src/protocol/address.js";
import type { ProtocolStores } from "../src/protocol/stores.js";
import { createMemoryStores } from "../src/store/memory-store.js";

export const PROVIDERS: [string, (seed?: string) => CryptoProvider][] = [
  ["noble", (seed) => createNobleProvider(seed ? { random: createDeterministicRandom(seed) } : {})],
  ["node", (seed) => createNodeProvider(seed ? { random: createDeterministicRandom(seed) } : {})],
  // WebCrypto as Node ships it: the browser provider's code, checked against the others here.
  ["webcrypto", (seed) => createWebCryptoProvider(seed ? { random: createDeterministicRandom(seed) } : {})],
];

export interface TestDevice {
  address: DeviceRef;
  provider: CryptoProvider;
  stores: ProtocolStores;
  identity: LocalIdentity;
  cipher: SessionCipher;
  /** A bundle with the next unused one-time prekey (or none when `withOneTime` is false). */
  bundle(withOneTime?: boolean): Promise<KeyBundle>;
  /** Recreates the SessionCipher over the same stores (a restart for durable stores). */
  restart(stores?: ProtocolStores): void;
}

export async function makeDevice(
  provider: CryptoProvider,
  accountId: string,
  deviceId: number,
  stores: ProtocolStores = createMemoryStores(),
  oneTimeCount = 5,
): Promise<TestDevice> {
  const address = { accountId, deviceId };
  const { identity } = await createDeviceIdentity(provider, stores, deviceId, `dev${deviceId}`, 1_700_000_000_000);
  await generatePrekeyBatch(provider, stores, { signedPrekeyId: 1, kemPrekeyId: 1, oneTimeFirstId: 1, oneTimeCount, nowMs: 1_700_000_000_000 });
  let nextOneTime = 1;
  const device: TestDevice = {
    address,
    provider,
    stores,
    identity,
    cipher: new SessionCipher(provider, stores, address, { now: () => 1_700_000_000_000 }),
    async bundle(withOneTime = true) {
      const spk = (await device.stores.signedPrekeys.load(1))!;
      const kem = (await device.stores.kemPrekeys.load(1))!;
      const otp = withOneTime ? await device.stores.oneTimePrekeys.load(nextOneTime++) : undefined;
      return create(KeyBundleSchema, {
        identity: toDeviceIdentity(identity, "dev", 0n),
        signedPrekey: toSignedPrekey(spk),
        kemPrekey: toKemPrekey(kem),
        oneTimePrekey: otp ? toOneTimePrekey(otp) : undefined,
      });
    },
    restart(newStores?: ProtocolStores) {
      if (newStores) device.stores = newStores;
      device.cipher = new SessionCipher(provider, device.stores, address, { now: () => 1_700_000_000_000 });
    },
  };
  return device;
}

/** Records each device's identity at the other (what a verified device list gives). */
export async function introduce(...devices: TestDevice[]): Promise<void> {
  for (const a of devices) {
    for (const b of devices) {
      if (a !== b) await a.stores.identity.saveRemoteIdentity(addressKey(b.address), { signingKey: b.identity.signingKey, dhKey: b.identity.dhKey });
    }
  }
}

export function text(body: string): Content {
  return create(ContentSchema, { sentAtMs: 1n, body: { case: "text", value: create(TextSchema, { body }) } });
}

export function bodyText(c: Content | undefined): string | undefined {
  return c?.body.case === "text" ? c.body.value.body : undefined;
}
