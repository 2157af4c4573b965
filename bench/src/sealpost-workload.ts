/**
 * The sealpost side of the crypto figures, free of Node modules so the same code runs in
 * Node and in a browser page (web-bench.ts): devices over in-memory stores, and the
 * session_setup and steady_1to1 workloads (a 1 KiB text, padded to its 2 KiB bucket).
 */
import { create } from "@bufbuild/protobuf";
import { KeyBundleSchema, type KeyBundle } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { ContentSchema, TextSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import {
  addressKey,
  createDeviceIdentity,
  createMemoryStores,
  generateOneTimePrekeys,
  generatePrekeyBatch,
  SessionCipher,
  toDeviceIdentity,
  toKemPrekey,
  toOneTimePrekey,
  toSignedPrekey,
  type CryptoProvider,
  type DeviceRef,
  type LocalIdentity,
  type ProtocolStores,
  type SessionCipherOptions,
} from "@sealpost/client/protocol";

export const CONTENT = create(ContentSchema, {
  sentAtMs: 1n,
  // 1 KiB of text: the serialized Content is a little over 1 KiB, padded to 2 KiB.
  body: { case: "text", value: create(TextSchema, { body: "x".repeat(1024) }) },
});

/** One implementation's side of a figure: `op` is timed; `between` runs untimed before each sample. */
export interface Runner {
  op: () => Promise<void>;
  between?: () => Promise<void>;
  /** Upper bound of ops per sample (bounded pools such as pre-made bundles). */
  maxOps?: number;
}

/** A sealpost device over in-memory stores. */
export class SealpostDevice {
  cipher!: SessionCipher;
  identity!: LocalIdentity;
  readonly stores: ProtocolStores = createMemoryStores();
  private nextOneTime = 1;
  constructor(
    readonly provider: CryptoProvider,
    readonly address: DeviceRef,
    /** E.g. sessionVersion 1 for the classical figures. */
    private readonly options: SessionCipherOptions = {},
  ) {}

  async init(): Promise<this> {
    const now = Date.now();
    this.identity = (await createDeviceIdentity(this.provider, this.stores, this.address.deviceId, "bench", now)).identity;
    await generatePrekeyBatch(this.provider, this.stores, { signedPrekeyId: 1, kemPrekeyId: 1, nowMs: now });
    this.cipher = new SessionCipher(this.provider, this.stores, this.address, this.options);
    return this;
  }

  /** A bundle with a fresh one-time prekey (generated here, outside the timed part). */
  async bundle(): Promise<KeyBundle> {
    const [otp] = await generateOneTimePrekeys(this.provider, this.nextOneTime++, 1, Date.now());
    await this.stores.oneTimePrekeys.save(otp.keyId, otp);
    return create(KeyBundleSchema, {
      identity: toDeviceIdentity(this.identity, "bench", 0n),
      signedPrekey: toSignedPrekey((await this.stores.signedPrekeys.load(1))!),
      kemPrekey: toKemPrekey((await this.stores.kemPrekeys.load(1))!),
      oneTimePrekey: toOneTimePrekey(otp),
    });
  }

  async trust(peer: SealpostDevice): Promise<void> {
    await this.stores.identity.saveRemoteIdentity(addressKey(peer.address), { signingKey: peer.identity.signingKey, dhKey: peer.identity.dhKey });
  }
}

export async function sealpostPair(provider: CryptoProvider, options: SessionCipherOptions = {}): Promise<[SealpostDevice, SealpostDevice]> {
  const a = await new SealpostDevice(provider, { accountId: "alice", deviceId: 1 }, options).init();
  const b = await new SealpostDevice(provider, { accountId: "bob", deviceId: 1 }, options).init();
  await a.trust(b);
  await b.trust(a);
  return [a, b];
}

export async function sealpostSend(from: SealpostDevice, to: SealpostDevice[], bundles?: KeyBundle[]) {
  return from.cipher.encryptForDevices(
    CONTENT,
    to.map((d, i) => ({ address: d.address, bundle: bundles?.[i] })),
  );
}

export async function sealpostRoundTrip(from: SealpostDevice, to: SealpostDevice): Promise<void> {
  const m = await sealpostSend(from, [to]);
  await to.cipher.decrypt(m.entries[0].entry, m.sharedBody, from.address);
}

/** session_setup and steady_1to1 with one provider, as setups producing runners. */
export function coreSetups(provider: CryptoProvider): Record<"session_setup" | "steady_1to1", () => Promise<Runner>> {
  return {
    async session_setup() {
      const [a, b] = await sealpostPair(provider);
      // Bundles are made before each sample, untimed (prekey generation is the recipient's job).
      const pool: KeyBundle[] = [];
      return {
        maxOps: 64,
        async between() {
          while (pool.length < 64) pool.push(await b.bundle());
        },
        async op() {
          await a.cipher.processBundle(b.address, pool.pop()!);
          await sealpostRoundTrip(a, b);
        },
      };
    },
    async steady_1to1() {
      const [a, b] = await sealpostPair(provider);
      await a.cipher.processBundle(b.address, await b.bundle());
      await sealpostRoundTrip(a, b);
      await sealpostRoundTrip(b, a);
      return { op: () => sealpostRoundTrip(a, b) };
    },
  };
}

/** Ops per second of `r` over about `budgetMs` (after its untimed `between`). */
export async function timedOps(r: Runner, budgetMs: number): Promise<number> {
  await r.between?.();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < budgetMs && n < (r.maxOps ?? Infinity)) {
    await r.op();
    n++;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}
