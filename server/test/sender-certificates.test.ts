/**
 * Sender certificates from a real server: GetSenderCertificate issues one for the calling
 * device (its identity key from the current device list) that verifies with the keys
 * GetCertificateKeys publishes; it needs a token, a revoked device gets none; a rotated key
 * still publishes the previous one, so certificates issued before the rotation verify.
 */
import { describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { createNodeProvider } from "@sealpost/client/crypto";
import { revokeDeviceChange, verifySenderCertificate } from "@sealpost/client/directory";
import { createTestAccount, transportFor, useTestServer } from "@sealpost/test-support";
import { TokenSigner } from "../src/auth/tokens.js";
import { SENDER_CERTIFICATE_TTL_MS, SenderCertificates } from "../src/directory/sender-certificates.js";

const server = useTestServer();
const provider = createNodeProvider();
const run = Date.now().toString(36);
const codeOf = (e: unknown) => ConnectError.from(e).code;

describe("GetSenderCertificate / GetCertificateKeys", () => {
  it("issues a certificate for the calling device that verifies with the published key", async () => {
    const a = await createTestAccount(server.url, `certs-${run}`);
    const d = a.devices[0];
    const open = createClient(DirectoryService, transportFor("connect-h2", server.url));
    const { keys } = await open.getCertificateKeys({});
    expect(keys.map((k) => k.keyId)).toEqual([1]);
    const before = Date.now();
    const { certificate } = await d.directory.getSenderCertificate({});
    const v = await verifySenderCertificate(provider, certificate!, keys, Date.now(), { accountId: a.accountId, deviceId: 1, identityKey: d.keys.signingKey });
    expect(v.expiresAtMs).toBeGreaterThanOrEqual(before + SENDER_CERTIFICATE_TTL_MS);
    expect(v.keyId).toBe(1);
  });

  it("needs a token, on every protocol; the keys do not", async () => {
    for (const protocol of ["connect-h1", "connect-h2", "grpc", "grpc-web"] as const) {
      const open = createClient(DirectoryService, transportFor(protocol, server.url));
      expect(await open.getSenderCertificate({}).then(() => "ok", codeOf), protocol).toBe(Code.Unauthenticated);
      expect((await open.getCertificateKeys({})).keys, protocol).toHaveLength(1);
    }
  });

  it("a revoked device gets no certificate", async () => {
    const a = await createTestAccount(server.url, `certs-revoked-${run}`, { devices: 2 });
    const [first, second] = a.devices;
    const change = await revokeDeviceChange(provider, a.deviceList, { deviceId: 1, signingSeed: first.keys.signingSeed }, 2, Date.now());
    await first.directory.revokeDevice({ deviceList: change });
    expect(await second.directory.getSenderCertificate({}).then(() => "ok", codeOf)).toBe(Code.Unauthenticated);
  });
});

describe("certificate key rotation", () => {
  it("version 2 publishes its key and version 1's; a certificate from before the rotation still verifies", async () => {
    const tokens = new TokenSigner(new Uint8Array(32).fill(9), () => 0);
    const now = () => 1_000;
    const v1 = new SenderCertificates(tokens, 1, now);
    const v2 = new SenderCertificates(tokens, 2, now);
    expect(v2.keys().map((k) => k.keyId)).toEqual([2, 1]);
    expect(v2.keys()[1].publicKey).toEqual(v1.keys()[0].publicKey);
    const identityKey = new Uint8Array(32).fill(1);
    const old = v1.issue("alice", 1, identityKey);
    expect((await verifySenderCertificate(provider, old, v2.keys(), 2000)).keyId).toBe(1);
    expect((await verifySenderCertificate(provider, v2.issue("alice", 1, identityKey), v2.keys(), 2000)).keyId).toBe(2);
    await expect(verifySenderCertificate(provider, old, new SenderCertificates(tokens, 3, now).keys(), 2_000)).rejects.toThrow(/not one of the server's/);
  });
});
