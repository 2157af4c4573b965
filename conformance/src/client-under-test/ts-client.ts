/**
 * The TypeScript client (clients/ts) behind the harness protocol: primitives through its
 * crypto provider, devices and sessions through its protocol API (SessionCipher with
 * in-memory stores). The runner uses it in-process as the reference implementation, and
 * ts-client-main.ts exposes it on stdin/stdout as a client under test.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  CreateDeviceResponseSchema,
  DecryptResponseSchema,
  EncryptResponseSchema,
  GetInfoResponseSchema,
  HarnessErrorKind,
  HarnessErrorSchema,
  HarnessResponseSchema,
  PrimitiveResponseSchema,
  type HarnessRequest,
  type HarnessResponse,
  type PrimitiveRequest,
} from "@sealpost/gen/sealpost/conformance/v1/client_harness_pb.js";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { createDeterministicRandom, createNodeProvider, SealpostCryptoError, type CryptoProvider } from "@sealpost/client/crypto";
import {
  addressKey,
  assertDeviceIdentity,
  createDeviceIdentity,
  createMemoryStores,
  generatePrekeyBatch,
  openSealedEntry,
  SessionCipher,
  type ProtocolStores,
} from "@sealpost/client/protocol";
import {
  accountIndex,
  leafHash,
  SenderCertificateError,
  transparencyLeaf,
  treeHeadSignedBytes,
  verifyInclusion,
  verifySenderCertificate,
} from "@sealpost/client/directory";
import { SenderCertificateSchema } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { GetCertificateKeysResponseSchema } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";

export const tsPrimitives = [
  "sha256",
  "sha512",
  "hmac-sha256",
  "hkdf-sha256",
  "aes-256-gcm-seal",
  "aes-256-gcm-open",
  "x25519-public-key",
  "x25519",
  "ed25519-public-key",
  "ed25519-sign",
  "ed25519-verify",
  "ml-kem-768-keygen",
  "ml-kem-768-encapsulate",
  "ml-kem-768-decapsulate",
  "open-sealed-entry",
  "verify-sender-certificate",
  "verify-log-inclusion",
];

class Unsupported extends Error {}
class Rejected extends Error {}

function input(req: PrimitiveRequest, name: string): Uint8Array {
  const v = req.inputs[name];
  if (v === undefined) throw new Error(`missing input "${name}"`);
  return v;
}

async function primitive(p: CryptoProvider, req: PrimitiveRequest): Promise<Record<string, Uint8Array>> {
  const i = (n: string) => input(req, n);
  switch (req.operation) {
    case "sha256":
      return { digest: p.sha256(i("data")) };
    case "sha512":
      return { digest: p.sha512(i("data")) };
    case "hmac-sha256":
      return { mac: await p.hmacSha256(i("key"), i("data")) };
    case "hkdf-sha256":
      return { okm: await p.hkdf(i("ikm"), req.inputs.salt ?? new Uint8Array(), req.inputs.info ?? new Uint8Array(), req.length) };
    case "aes-256-gcm-seal":
      return { sealed: await p.aesGcmSeal(i("key"), i("nonce"), i("plaintext"), req.inputs.aad ?? new Uint8Array()) };
    case "aes-256-gcm-open": {
      const pt = await p.aesGcmOpen(i("key"), i("nonce"), i("sealed"), req.inputs.aad ?? new Uint8Array());
      if (!pt) throw new Rejected("authentication tag does not verify");
      return { plaintext: pt };
    }
    case "x25519-public-key":
      return { public_key: await p.x25519PublicKey(i("private_key")) };
    case "x25519":
      return { shared: await p.x25519(i("private_key"), i("public_key")) };
    case "ed25519-public-key":
      return { public_key: await p.ed25519PublicKey(i("seed")) };
    case "ed25519-sign":
      return { signature: await p.ed25519Sign(i("seed"), i("message")) };
    case "ed25519-verify":
      return { valid: new Uint8Array([(await p.ed25519Verify(i("public_key"), i("message"), i("signature"))) ? 1 : 0]) };
    case "ml-kem-768-keygen": {
      const k = p.mlKemKeygen(i("seed"));
      return { public_key: k.publicKey, secret_key: k.secretKey };
    }
    case "ml-kem-768-encapsulate": {
      const e = p.mlKemEncapsulate(i("public_key"), i("m"));
      return { ciphertext: e.ciphertext, shared_secret: e.sharedSecret };
    }
    case "ml-kem-768-decapsulate":
      return { shared_secret: p.mlKemDecapsulate(i("ciphertext"), i("secret_key")) };
    case "open-sealed-entry": {
      let opened: Awaited<ReturnType<typeof openSealedEntry>>;
      try {
        opened = await openSealedEntry(p, { dhPrivateKey: i("dh_private_key"), dhPublicKey: i("dh_key") }, i("entry"));
      } catch (err) {
        throw new Rejected(err instanceof Error ? err.message : String(err));
      }
      return { certificate: toBinary(SenderCertificateSchema, opened.certificate), device_envelope: opened.deviceEnvelope };
    }
    case "verify-sender-certificate": {
      const u = (n: string) => req.inputs[n];
      const be = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
      const expected = {
        accountId: u("account_id") && new TextDecoder().decode(u("account_id")),
        deviceId: u("device_id") && be(u("device_id")).getUint32(0),
        identityKey: u("identity_key"),
      };
      let problem = "";
      try {
        const cert = fromBinary(SenderCertificateSchema, i("certificate"));
        const keys = fromBinary(GetCertificateKeysResponseSchema, i("keys")).keys;
        await verifySenderCertificate(p, cert, keys, Number(be(i("now_ms")).getBigUint64(0)), expected);
      } catch (err) {
        if (!(err instanceof SenderCertificateError)) throw err;
        problem = err.problem;
      }
      return { problem: new TextEncoder().encode(problem) };
    }
    case "verify-log-inclusion": {
      const u64 = (n: string) => new DataView(i(n).buffer, i(n).byteOffset, 8).getBigUint64(0);
      const accountId = new TextDecoder().decode(i("account_id"));
      let problem = "";
      if (!(await p.ed25519Verify(i("log_key"), treeHeadSignedBytes(u64("tree_size"), i("root_hash"), u64("timestamp_ms")), i("signature"))))
        problem = "bad-tree-head";
      else {
        const path = Array.from({ length: i("audit_path").length / 32 }, (_, k) => i("audit_path").subarray(k * 32, k * 32 + 32));
        const leaf = leafHash(p, transparencyLeaf(accountIndex(p, accountId), u64("version"), p.sha256(i("device_list"))));
        if (!verifyInclusion(p, leaf, Number(u64("leaf_index")), Number(u64("tree_size")), path, i("root_hash"))) problem = "not-included";
      }
      return { problem: new TextEncoder().encode(problem) };
    }
  }
  throw new Unsupported(`primitive "${req.operation}" is not supported`);
}

interface Device {
  cipher: SessionCipher;
  stores: ProtocolStores;
}

/** One harness session: devices live as long as the harness. */
export class TsHarness {
  readonly #provider = createNodeProvider();
  readonly #devices = new Map<string, Device>();

  async handle(req: HarnessRequest): Promise<HarnessResponse> {
    try {
      return create(HarnessResponseSchema, { id: req.id, kind: await this.#dispatch(req) });
    } catch (err) {
      const kind =
        err instanceof Unsupported
          ? HarnessErrorKind.UNSUPPORTED
          : err instanceof Rejected || err instanceof SealpostCryptoError
            ? HarnessErrorKind.REJECTED
            : HarnessErrorKind.INTERNAL;
      return create(HarnessResponseSchema, {
        id: req.id,
        kind: { case: "error", value: create(HarnessErrorSchema, { kind, message: `${(err as Error).name}: ${(err as Error).message}` }) },
      });
    }
  }

  #device(handle: string): Device {
    const d = this.#devices.get(handle);
    if (!d) throw new Error(`unknown device handle "${handle}"`);
    return d;
  }

  async #dispatch(req: HarnessRequest): Promise<HarnessResponse["kind"]> {
    const k = req.kind;
    switch (k.case) {
      case "getInfo":
        return {
          case: "getInfo",
          value: create(GetInfoResponseSchema, { implementation: "sealpost-ts (clients/ts, node:crypto provider)", primitives: tsPrimitives }),
        };
      case "primitive":
        return { case: "primitive", value: create(PrimitiveResponseSchema, { outputs: await primitive(this.#provider, k.value) }) };
      case "createDevice": {
        const r = k.value;
        if (this.#devices.has(r.handle)) throw new Error(`device handle "${r.handle}" exists`);
        const address = { accountId: r.address?.accountId ?? "", deviceId: r.address?.deviceId ?? 0 };
        const provider = createNodeProvider(r.randomSeed ? { random: createDeterministicRandom(r.randomSeed) } : {});
        const stores = createMemoryStores();
        const { publicIdentity } = await createDeviceIdentity(provider, stores, address.deviceId, r.name, Date.now());
        const upload = await generatePrekeyBatch(provider, stores, {
          signedPrekeyId: r.signedPrekeyId || 1,
          kemPrekeyId: r.kemPrekeyId || 1,
          oneTimeFirstId: r.oneTimePrekeyFirstId || 1,
          oneTimeCount: r.oneTimePrekeyCount,
          nowMs: Date.now(),
        });
        this.#devices.set(r.handle, { cipher: new SessionCipher(provider, stores, address), stores });
        return {
          case: "createDevice",
          value: create(CreateDeviceResponseSchema, {
            identity: publicIdentity,
            signedPrekey: upload.signedPrekey,
            kemPrekey: upload.kemPrekey,
            oneTimePrekeys: upload.oneTimePrekeys,
          }),
        };
      }
      case "encrypt": {
        const r = k.value;
        const d = this.#device(r.handle);
        const content = fromBinary(ContentSchema, r.content);
        const recipients = r.recipients.map((x) => ({
          address: { accountId: x.address?.accountId ?? "", deviceId: x.address?.deviceId ?? 0 },
          bundle: x.bundle,
        }));
        const m = await d.cipher.encryptForDevices(content, recipients, { messageId: r.messageId.length ? r.messageId : undefined });
        return {
          case: "encrypt",
          value: create(EncryptResponseSchema, { sharedBody: m.sharedBody, entries: m.entries.map((e) => ({ address: e.address, entry: e.entry })) }),
        };
      }
      case "decrypt": {
        const r = k.value;
        const d = this.#device(r.handle);
        const sender = { accountId: r.sender?.accountId ?? "", deviceId: r.sender?.deviceId ?? 0 };
        // What a Messenger does after verifying the sender's device list: record its identity.
        if (r.senderIdentity) await d.stores.identity.saveRemoteIdentity(addressKey(sender), await assertDeviceIdentity(this.#provider, r.senderIdentity));
        const m = await d.cipher.decrypt(r.entry, r.sharedBody, sender);
        if (!m.content) throw new Unsupported("sender-key group bodies are not part of the harness");
        return {
          case: "decrypt",
          value: create(DecryptResponseSchema, {
            content: toBinary(ContentSchema, m.content),
            channelSequence: m.payload.channelSequence,
            newSession: m.newSession,
          }),
        };
      }
    }
    throw new Unsupported(`request kind ${String(k.case)} is not supported`);
  }
}
