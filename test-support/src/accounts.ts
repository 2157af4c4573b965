/**
 * Real accounts for integration tests, made through the real RPCs over connect-es:
 * CreateAccount, GetAuthChallenge + Authenticate, LinkDevice, UploadPrekeys. Each device comes
 * with its private keys (so tests can run sessions), a bearer token, and an authenticated
 * transport and DirectoryService client.
 *
 *   const alice = await createTestAccount(server.url, "alice", { devices: 2 });
 *   const client = createClient(DeliveryService, alice.devices[0].transport);
 */
import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { SignedDeviceList } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { KemPrekeySchema, OneTimePrekeySchema, SignedPrekeySchema, type OneTimePrekey } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { concatBytes, createNodeProvider, u32be, utf8, type CryptoProvider } from "@sealpost/client/crypto";
import { authSignedBytes, createFirstDeviceList, generateDeviceKeys, linkDeviceChange, type GeneratedDeviceKeys } from "@sealpost/client/directory";
import { generateOneTimePrekeys } from "@sealpost/client/protocol";

export interface TestPrekeys {
  signed: { keyId: number; privateKey: Uint8Array; publicKey: Uint8Array; signature: Uint8Array };
  kem: { keyId: number; secretKey: Uint8Array; publicKey: Uint8Array; signature: Uint8Array };
  /** Uploaded one-time prekeys, with their private keys. */
  oneTime: { keyId: number; privateKey: Uint8Array; publicKey: Uint8Array }[];
}

export interface TestDevice {
  address: { accountId: string; deviceId: number };
  /** Identity keys: signingSeed/dhPrivateKey are private; signingKey/dhKey/dhKeySignature public. */
  keys: GeneratedDeviceKeys;
  prekeys: TestPrekeys;
  /** Current bearer token (replaced by reauthenticate()). */
  token: string;
  tokenExpiresAtMs: number;
  /** `{ authorization: "Bearer <token>" }` for hand-made calls. */
  headers: Record<string, string>;
  /** connect-es transport that sends this device's current token on every call. */
  transport: Transport;
  /** DirectoryService client over `transport`. */
  directory: Client<typeof DirectoryService>;
  /** Fetches a fresh token (e.g. after a test made the old one expire). */
  reauthenticate(): Promise<string>;
}

export interface TestAccount {
  accountId: string;
  devices: TestDevice[];
  /** The device list version this helper last stored. */
  deviceList: SignedDeviceList;
  provider: CryptoProvider;
}

export interface TestAccountOptions {
  /** Devices to create (the first registers the account, the rest are linked by it). Default 1. */
  devices?: number;
  /** One-time prekeys uploaded per device (at most 100). Default 10. */
  oneTimePrekeys?: number;
  /** "connect" (HTTP/2 binary, default) or "grpc". */
  protocol?: "connect" | "grpc";
  provider?: CryptoProvider;
}

const SIGNED_PREKEY_LABEL = utf8("sealpost.signed-prekey.v1");
const KEM_PREKEY_LABEL = utf8("sealpost.kem-prekey.v1");

/** A plain transport (no token) for unauthenticated calls. */
export function plainTransport(baseUrl: string, protocol: "connect" | "grpc" = "connect", interceptors: Interceptor[] = []): Transport {
  return protocol === "grpc"
    ? createGrpcTransport({ baseUrl, interceptors })
    : createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors });
}

/** Proves possession of a device's signing key and returns a token. */
export async function authenticateDevice(
  baseUrl: string,
  address: { accountId: string; deviceId: number },
  signingSeed: Uint8Array,
  provider: CryptoProvider = createNodeProvider(),
): Promise<{ token: string; expiresAtMs: number }> {
  const client = createClient(DirectoryService, plainTransport(baseUrl));
  const { nonce } = await client.getAuthChallenge({ device: address });
  const signature = await provider.ed25519Sign(signingSeed, authSignedBytes(address.accountId, address.deviceId, nonce));
  const res = await client.authenticate({ device: address, nonce, signature });
  return { token: res.token, expiresAtMs: Number(res.expiresAtMs) };
}

/** Signed prekey, ML-KEM prekey and `count` one-time prekeys (ids firstOneTimeId, ...). */
export async function generateTestPrekeys(provider: CryptoProvider, keys: GeneratedDeviceKeys, count: number, firstOneTimeId = 1): Promise<TestPrekeys> {
  const spPriv = provider.random(32);
  const spPub = await provider.x25519PublicKey(spPriv);
  const kemPair = provider.mlKemKeygen(provider.random(64));
  return {
    signed: {
      keyId: 1,
      privateKey: spPriv,
      publicKey: spPub,
      signature: await provider.ed25519Sign(keys.signingSeed, concatBytes(SIGNED_PREKEY_LABEL, u32be(1), spPub)),
    },
    kem: {
      keyId: 1,
      secretKey: kemPair.secretKey,
      publicKey: kemPair.publicKey,
      signature: await provider.ed25519Sign(keys.signingSeed, concatBytes(KEM_PREKEY_LABEL, u32be(1), kemPair.publicKey)),
    },
    oneTime: await generateOneTimePrekeys(provider, firstOneTimeId, count, Date.now()),
  };
}

export function prekeyMessages(p: TestPrekeys) {
  return {
    signedPrekey: create(SignedPrekeySchema, { keyId: p.signed.keyId, publicKey: p.signed.publicKey, signature: p.signed.signature }),
    kemPrekey: create(KemPrekeySchema, { keyId: p.kem.keyId, publicKey: p.kem.publicKey, signature: p.kem.signature }),
    oneTimePrekeys: p.oneTime.map((k): OneTimePrekey => create(OneTimePrekeySchema, { keyId: k.keyId, publicKey: k.publicKey })),
  };
}

async function deviceFor(
  baseUrl: string,
  accountId: string,
  deviceId: number,
  keys: GeneratedDeviceKeys,
  prekeys: TestPrekeys,
  provider: CryptoProvider,
  protocol: "connect" | "grpc",
): Promise<TestDevice> {
  const address = { accountId, deviceId };
  const first = await authenticateDevice(baseUrl, address, keys.signingSeed, provider);
  const device: TestDevice = {
    address,
    keys,
    prekeys,
    token: first.token,
    tokenExpiresAtMs: first.expiresAtMs,
    headers: { authorization: `Bearer ${first.token}` },
    transport: undefined as unknown as Transport,
    directory: undefined as unknown as Client<typeof DirectoryService>,
    reauthenticate: async () => {
      const t = await authenticateDevice(baseUrl, address, keys.signingSeed, provider);
      device.token = t.token;
      device.tokenExpiresAtMs = t.expiresAtMs;
      device.headers = { authorization: `Bearer ${t.token}` };
      return t.token;
    },
  };
  const withToken: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${device.token}`);
    return next(req);
  };
  device.transport = plainTransport(baseUrl, protocol, [withToken]);
  device.directory = createClient(DirectoryService, device.transport);
  return device;
}

/**
 * Registers `accountId` with its first device, links `devices - 1` more (signed by the first),
 * and authenticates each. Every device has uploaded a signed prekey, an ML-KEM prekey and
 * `oneTimePrekeys` one-time prekeys.
 */
export async function createTestAccount(baseUrl: string, accountId: string, opts: TestAccountOptions = {}): Promise<TestAccount> {
  const provider = opts.provider ?? createNodeProvider();
  const protocol = opts.protocol ?? "connect";
  const count = opts.devices ?? 1;
  const otpCount = opts.oneTimePrekeys ?? 10;
  const now = Date.now();
  const open = createClient(DirectoryService, plainTransport(baseUrl, protocol));

  const firstKeys = await generateDeviceKeys(provider, "device-1");
  const firstPrekeys = await generateTestPrekeys(provider, firstKeys, otpCount);
  let deviceList = await createFirstDeviceList(provider, { accountId, device: firstKeys, nowMs: now });
  const created = await open.createAccount({ deviceList, ...prekeyMessages(firstPrekeys) });
  const first = await deviceFor(baseUrl, accountId, created.device!.deviceId, firstKeys, firstPrekeys, provider, protocol);
  const devices = [first];

  for (let i = 1; i < count; i++) {
    const keys = await generateDeviceKeys(provider, `device-${i + 1}`);
    const change = await linkDeviceChange(provider, deviceList, { deviceId: first.address.deviceId, signingSeed: firstKeys.signingSeed }, keys, now);
    await first.directory.linkDevice({ deviceList: change.deviceList });
    deviceList = change.deviceList;
    const prekeys = await generateTestPrekeys(provider, keys, otpCount);
    const device = await deviceFor(baseUrl, accountId, change.deviceId, keys, prekeys, provider, protocol);
    await device.directory.uploadPrekeys(prekeyMessages(prekeys));
    devices.push(device);
  }
  return { accountId, devices, deviceList, provider };
}
