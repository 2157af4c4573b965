/**
 * Client cases made from the crypto vectors in conformance/vectors/*.json (produced by the
 * crypto core, see its README): each vector entry becomes one case that asks the client
 * under test to recompute the recorded outputs.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { SenderCertificateSchema } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import { GetCertificateKeysResponseSchema } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { randomBytes } from "node:crypto";
import { CreateDeviceRequestSchema, DecryptRequestSchema } from "@sealpost/gen/sealpost/conformance/v1/client_harness_pb.js";
import { ClientCheckFailure, expectBytes, expectOk, fromHex, hex, primitive, primitiveRejected, type ClientCase } from "./client-case.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function flip(b: Uint8Array): Uint8Array {
  const out = b.slice();
  out[out.length >> 1] ^= 1;
  return out;
}

function primitiveCases(v: Json, file: string): ClientCase[] {
  const cases: ClientCase[] = [];
  const add = (name: string, checks: string, run: ClientCase["run"]) => cases.push({ name: `client/vectors/primitives/${name}`, checks, file, run });
  (v.x25519 ?? []).forEach((x: Json, i: number) =>
    add(`x25519/${i}`, "X25519 public keys and the shared secret from both sides match the vector (RFC 7748).", async ({ sut }) => {
      expectBytes("public_a", (await primitive(sut, "x25519-public-key", { private_key: fromHex(x.private_a) })).public_key, x.public_a);
      expectBytes("public_b", (await primitive(sut, "x25519-public-key", { private_key: fromHex(x.private_b) })).public_key, x.public_b);
      expectBytes("shared (a)", (await primitive(sut, "x25519", { private_key: fromHex(x.private_a), public_key: fromHex(x.public_b) })).shared, x.shared);
      expectBytes("shared (b)", (await primitive(sut, "x25519", { private_key: fromHex(x.private_b), public_key: fromHex(x.public_a) })).shared, x.shared);
    }),
  );
  (v.ed25519 ?? []).forEach((x: Json, i: number) =>
    add(
      `ed25519/${i}`,
      "Ed25519 public key and deterministic signature match the vector; verify accepts it and rejects a flipped bit (RFC 8032).",
      async ({ sut }) => {
        const msg = fromHex(x.message);
        expectBytes("public_key", (await primitive(sut, "ed25519-public-key", { seed: fromHex(x.seed) })).public_key, x.public_key);
        expectBytes("signature", (await primitive(sut, "ed25519-sign", { seed: fromHex(x.seed), message: msg })).signature, x.signature);
        expectBytes(
          "verify",
          (await primitive(sut, "ed25519-verify", { public_key: fromHex(x.public_key), message: msg, signature: fromHex(x.signature) })).valid,
          "01",
        );
        expectBytes(
          "verify (flipped)",
          (await primitive(sut, "ed25519-verify", { public_key: fromHex(x.public_key), message: msg, signature: flip(fromHex(x.signature)) })).valid,
          "00",
        );
      },
    ),
  );
  (v.hkdf_sha256 ?? []).forEach((x: Json, i: number) =>
    add(`hkdf-sha256/${i}`, "HKDF-SHA256 output matches the vector (RFC 5869; empty salt = HashLen zeros).", async ({ sut }) => {
      const out = await primitive(sut, "hkdf-sha256", { ikm: fromHex(x.ikm), salt: fromHex(x.salt), info: fromHex(x.info) }, x.length);
      expectBytes("okm", out.okm, x.okm);
    }),
  );
  (v.hmac_sha256 ?? []).forEach((x: Json, i: number) =>
    add(`hmac-sha256/${i}`, "HMAC-SHA256 matches the vector (RFC 2104).", async ({ sut }) => {
      expectBytes("mac", (await primitive(sut, "hmac-sha256", { key: fromHex(x.key), data: fromHex(x.data) })).mac, x.mac);
    }),
  );
  (v.sha2 ?? []).forEach((x: Json, i: number) =>
    add(`sha2/${i}`, "SHA-256 and SHA-512 match the vector (FIPS 180-4).", async ({ sut }) => {
      expectBytes("sha256", (await primitive(sut, "sha256", { data: fromHex(x.data) })).digest, x.sha256);
      expectBytes("sha512", (await primitive(sut, "sha512", { data: fromHex(x.data) })).digest, x.sha512);
    }),
  );
  (v.aes_256_gcm ?? []).forEach((x: Json, i: number) =>
    add(`aes-256-gcm/${i}`, "AES-256-GCM seals to the recorded ciphertext||tag, opens it back, and refuses a tampered one (SP 800-38D).", async ({ sut }) => {
      const base = { key: fromHex(x.key), nonce: fromHex(x.nonce), aad: fromHex(x.aad) };
      expectBytes("sealed", (await primitive(sut, "aes-256-gcm-seal", { ...base, plaintext: fromHex(x.plaintext) })).sealed, x.ciphertext);
      expectBytes("opened", (await primitive(sut, "aes-256-gcm-open", { ...base, sealed: fromHex(x.ciphertext) })).plaintext, x.plaintext);
      await primitiveRejected(sut, "aes-256-gcm-open", { ...base, sealed: flip(fromHex(x.ciphertext)) });
    }),
  );
  (v.ml_kem_768 ?? []).forEach((x: Json, i: number) =>
    add(
      `ml-kem-768/${i}`,
      "ML-KEM-768 keygen from the seed, encapsulation with the recorded m, and decapsulation match the vector (FIPS 203).",
      async ({ sut }) => {
        const k = await primitive(sut, "ml-kem-768-keygen", { seed: fromHex(x.seed) });
        expectBytes("public_key", k.public_key, x.public_key);
        expectBytes("sha256(secret_key)", k.secret_key ? sha256(k.secret_key) : undefined, x.secret_key_sha256);
        const e = await primitive(sut, "ml-kem-768-encapsulate", { public_key: fromHex(x.public_key), m: fromHex(x.m) });
        expectBytes("ciphertext", e.ciphertext, x.ciphertext);
        expectBytes("shared_secret", e.shared_secret, x.shared_secret);
        expectBytes(
          "decapsulated",
          (await primitive(sut, "ml-kem-768-decapsulate", { ciphertext: fromHex(x.ciphertext), secret_key: k.secret_key })).shared_secret,
          x.shared_secret,
        );
      },
    ),
  );
  return cases;
}

function keySignatureCases(v: Json, file: string): ClientCase[] {
  const id = v.identity;
  const spk = v.signed_prekey;
  const kem = v.kem_prekey;
  return [
    {
      name: "client/vectors/key-signatures/signatures",
      checks: "dh_key_signature and the signed and ML-KEM prekey signatures over the recorded signed bytes match the vector (directory/v1 labels).",
      file,
      run: async ({ sut }) => {
        expectBytes("signing_key", (await primitive(sut, "ed25519-public-key", { seed: fromHex(id.signing_seed) })).public_key, id.signing_key);
        expectBytes("dh_key", (await primitive(sut, "x25519-public-key", { private_key: fromHex(id.dh_private_key) })).public_key, id.dh_key);
        const sign = async (bytes: string) => (await primitive(sut, "ed25519-sign", { seed: fromHex(id.signing_seed), message: fromHex(bytes) })).signature;
        expectBytes("dh_key_signature", await sign(id.signed_bytes), id.dh_key_signature);
        expectBytes("signed prekey signature", await sign(spk.signed_bytes), spk.signature);
        expectBytes("kem prekey signature", await sign(kem.signed_bytes_prefix + kem.public_key), kem.signature);
      },
    },
    {
      name: "client/vectors/key-signatures/create-device-from-seed",
      checks:
        "A device created from the vector's deterministic random seed (documented draw order) publishes exactly the recorded identity, signed prekey and ML-KEM prekey.",
      file,
      run: async ({ sut }) => {
        const r = await expectOk(
          sut,
          {
            case: "createDevice",
            value: create(CreateDeviceRequestSchema, {
              handle: "vector-key-signatures",
              address: { accountId: "vectors", deviceId: 1 },
              name: "vector",
              randomSeed: v.seed,
              signedPrekeyId: spk.key_id,
              kemPrekeyId: kem.key_id,
              oneTimePrekeyCount: 0,
            }),
          },
          "createDevice",
        );
        expectBytes("identity.signing_key", r.identity?.signingKey, id.signing_key);
        expectBytes("identity.dh_key", r.identity?.dhKey, id.dh_key);
        expectBytes("identity.dh_key_signature", r.identity?.dhKeySignature, id.dh_key_signature);
        expectBytes("signed_prekey.public_key", r.signedPrekey?.publicKey, spk.public_key);
        expectBytes("signed_prekey.signature", r.signedPrekey?.signature, spk.signature);
        expectBytes("kem_prekey.public_key", r.kemPrekey?.publicKey, kem.public_key);
        expectBytes("kem_prekey.signature", r.kemPrekey?.signature, kem.signature);
        if (r.signedPrekey?.keyId !== spk.key_id) throw new ClientCheckFailure(`signed_prekey.key_id: expected ${spk.key_id}, got ${r.signedPrekey?.keyId}`);
      },
    },
  ];
}

/**
 * envelope.json replayed: each recipient device is recreated on the client under test from
 * its deterministic seed (the generator's "envelope/<device>"), then must decrypt the
 * recorded entries of both sends to the recorded content, channel sequence and new_session.
 */
function envelopeCases(v: Json, file: string): ClientCase[] {
  const sender: string = v.sender;
  const recipients: string[] = (v.sends?.[0]?.entries ?? []).map((e: Json) => e.recipient);
  const addr = (d: string) => ({ accountId: d.split(".")[0], deviceId: Number(d.split(".")[1]) });
  return recipients.map((rcpt) => ({
    name: `client/vectors/envelope/replay-${rcpt}`,
    checks: `A device recreated from the vector seed decrypts the recorded fan-out entries for ${rcpt} (a PrekeyMessage, then a second message) to the recorded content and channel sequence.`,
    file,
    run: async ({ sut, ref }) => {
      const run = randomBytes(4).toString("hex");
      const device = (d: string) =>
        create(CreateDeviceRequestSchema, {
          handle: `${run}/${d}`,
          address: addr(d),
          name: "d",
          randomSeed: `envelope/${d}`,
          signedPrekeyId: 1,
          kemPrekeyId: 1,
          oneTimePrekeyFirstId: 1,
          oneTimePrekeyCount: 1,
        });
      const from = await expectOk(ref, { case: "createDevice", value: device(sender) }, "createDevice");
      await expectOk(sut, { case: "createDevice", value: device(rcpt) }, "createDevice");
      for (const [i, send] of (v.sends as Json[]).entries()) {
        const entry = send.entries.find((e: Json) => e.recipient === rcpt);
        const want = send.received.find((r: Json) => r.recipient === rcpt);
        const dec = await expectOk(
          sut,
          {
            case: "decrypt",
            value: create(DecryptRequestSchema, {
              handle: `${run}/${rcpt}`,
              sender: addr(sender),
              sharedBody: fromHex(send.shared_body),
              entry: fromHex(entry.entry),
              senderIdentity: from.identity,
            }),
          },
          "decrypt",
        );
        expectBytes(`send ${i + 1}: content`, dec.content, want.content);
        if (Number(dec.channelSequence) !== want.channel_sequence)
          throw new ClientCheckFailure(`send ${i + 1}: channel_sequence ${dec.channelSequence}, expected ${want.channel_sequence}`);
        if (dec.newSession !== want.new_session) throw new ClientCheckFailure(`send ${i + 1}: new_session ${dec.newSession}, expected ${want.new_session}`);
      }
    },
  }));
}

const u64be = (n: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
};
const u32be = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};
const utf8 = (s: string) => new TextEncoder().encode(s);

/**
 * Sealed sending (sealed-entry.json, and key-signatures.json's sender_certificate): the
 * client under test opens a sealed entry, refuses it tampered or for another device, and
 * verifies certificates, naming the first check that fails (expired, forged, unknown key,
 * mismatched, malformed).
 */
function sealedSendingCases(sealed: Json | undefined, ks: Json | undefined, dir: string): ClientCase[] {
  const cases: ClientCase[] = [];
  if (sealed) {
    const file = join(dir, "sealed-entry.json");
    const recipient = { dh_private_key: fromHex(sealed.recipient_dh_private_key), dh_key: fromHex(sealed.recipient_dh_key) };
    cases.push({
      name: "client/vectors/sealed-entry/open",
      checks: "The client opens the vector's SealedEntry with the recipient's identity key to the recorded certificate and device envelope.",
      file,
      run: async ({ sut }) => {
        const out = await primitive(sut, "open-sealed-entry", { entry: fromHex(sealed.sealed_entry), ...recipient });
        expectBytes("certificate", out.certificate, sealed.certificate);
        expectBytes("device_envelope", out.device_envelope, sealed.device_envelope);
      },
    });
    cases.push({
      name: "client/vectors/sealed-entry/refused",
      checks: "The client refuses the entry with a flipped bit, and for another device's identity key.",
      file,
      run: async ({ sut }) => {
        await primitiveRejected(sut, "open-sealed-entry", { entry: flip(fromHex(sealed.sealed_entry)), ...recipient });
        const other = randomBytes(32);
        const otherPublic = (await primitive(sut, "x25519-public-key", { private_key: other })).public_key;
        await primitiveRejected(sut, "open-sealed-entry", { entry: fromHex(sealed.sealed_entry), dh_private_key: other, dh_key: otherPublic });
      },
    });
  }
  const c = ks?.sender_certificate;
  if (c) {
    const file = join(dir, "key-signatures.json");
    const certificate = (body: Uint8Array, signature: Uint8Array) => toBinary(SenderCertificateSchema, create(SenderCertificateSchema, { body, signature }));
    const good = certificate(fromHex(c.body), fromHex(c.signature));
    const keys = (list: { key_id: number; public_key: string }[]) =>
      toBinary(
        GetCertificateKeysResponseSchema,
        create(GetCertificateKeysResponseSchema, { keys: list.map((k) => ({ keyId: k.key_id, publicKey: fromHex(k.public_key) })) }),
      );
    const published = keys([c.server_key]);
    const valid = c.expires_at_ms - 60_000;
    const verify = async (sut: Parameters<ClientCase["run"]>[0]["sut"], inputs: Record<string, Uint8Array>) =>
      new TextDecoder().decode((await primitive(sut, "verify-sender-certificate", inputs)).problem);
    const expect = (what: string, got: string, want: string) => {
      if (got !== want) throw new ClientCheckFailure(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    };
    cases.push({
      name: "client/vectors/sender-certificate/valid",
      checks: "The vector's certificate verifies with the published key before it expires, also naming its account, device and identity key.",
      file,
      run: async ({ sut }) => {
        expect("valid", await verify(sut, { certificate: good, keys: published, now_ms: u64be(valid) }), "");
        const named = { account_id: utf8(c.account_id), device_id: u32be(c.device_id), identity_key: fromHex(c.identity_key) };
        expect("valid, named", await verify(sut, { certificate: good, keys: published, now_ms: u64be(valid), ...named }), "");
      },
    });
    cases.push({
      name: "client/vectors/sender-certificate/refused",
      checks:
        "The client names what is wrong: expired (at expires_at_ms), bad-signature (a flipped bit), unknown-key (no published key of its id), mismatched (another account, device or identity key), malformed (a body that does not parse, a short signature).",
      file,
      run: async ({ sut }) => {
        const at = (now: number) => ({ certificate: good, keys: published, now_ms: u64be(now) });
        expect("expired", await verify(sut, at(c.expires_at_ms)), "expired");
        expect("forged", await verify(sut, { ...at(valid), certificate: certificate(fromHex(c.body), flip(fromHex(c.signature))) }), "bad-signature");
        expect("unknown key", await verify(sut, { ...at(valid), keys: keys([{ ...c.server_key, key_id: c.server_key.key_id + 1 }]) }), "unknown-key");
        expect("another account", await verify(sut, { ...at(valid), account_id: utf8(`${c.account_id}x`) }), "mismatched");
        expect("another device", await verify(sut, { ...at(valid), device_id: u32be(c.device_id + 1) }), "mismatched");
        expect("another identity key", await verify(sut, { ...at(valid), identity_key: flip(fromHex(c.identity_key)) }), "mismatched");
        expect(
          "malformed body",
          await verify(sut, { ...at(valid), certificate: certificate(new Uint8Array([0xff, 0xff]), fromHex(c.signature)) }),
          "malformed",
        );
        expect(
          "short signature",
          await verify(sut, { ...at(valid), certificate: certificate(fromHex(c.body), fromHex(c.signature).subarray(1)) }),
          "malformed",
        );
      },
    });
  }
  return cases;
}

/**
 * Key transparency (transparency.json): the client under test checks a device list's place in
 * the log (verify-log-inclusion): the vector's leaves with their audit paths and signed head
 * pass; a changed path, account, version or list, a forged signature or another log key are
 * refused with the problem named.
 */
function transparencyCases(v: Json | undefined, file: string): ClientCase[] {
  if (!v?.inclusion || !v.tree_head) return [];
  const h = v.tree_head;
  const x = (v.inclusion as Json[]).find((i) => i.tree_size === h.tree_size && i.leaf_index > 0);
  if (!x) return [];
  const leaf = v.leaves[x.leaf_index];
  const inputs = {
    account_id: utf8(leaf.account_id),
    version: u64be(leaf.version),
    device_list: fromHex(leaf.device_list),
    leaf_index: u64be(x.leaf_index),
    tree_size: u64be(h.tree_size),
    timestamp_ms: u64be(h.timestamp_ms),
    root_hash: fromHex(h.root_hash),
    signature: fromHex(h.signature),
    log_key: fromHex(h.log_key),
    audit_path: concatHex(x.audit_path),
  };
  const verify = async (sut: Parameters<ClientCase["run"]>[0]["sut"], over: Partial<typeof inputs> = {}) =>
    new TextDecoder().decode((await primitive(sut, "verify-log-inclusion", { ...inputs, ...over })).problem);
  const expect = (what: string, got: string, want: string) => {
    if (got !== want) throw new ClientCheckFailure(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  };
  return [
    {
      name: "client/vectors/transparency/included",
      checks: `The vector's leaf ${x.leaf_index} (${leaf.account_id}, version ${leaf.version}) is proven in the signed head of ${h.tree_size} leaves.`,
      file,
      run: async ({ sut }) => expect("included", await verify(sut), ""),
    },
    {
      name: "client/vectors/transparency/refused",
      checks:
        "The client refuses what the log does not vouch for: a flipped audit path, another account, version or list (not-included), a flipped signature, another log key or another timestamp (bad-tree-head).",
      file,
      run: async ({ sut }) => {
        expect("flipped path", await verify(sut, { audit_path: flip(inputs.audit_path) }), "not-included");
        expect("another account", await verify(sut, { account_id: utf8(`${leaf.account_id}x`) }), "not-included");
        expect("another version", await verify(sut, { version: u64be(leaf.version + 1) }), "not-included");
        expect("another list", await verify(sut, { device_list: flip(inputs.device_list) }), "not-included");
        expect("flipped signature", await verify(sut, { signature: flip(inputs.signature) }), "bad-tree-head");
        expect("another log key", await verify(sut, { log_key: fromHex(v.leaves[0].leaf_hash) }), "bad-tree-head");
        expect("another timestamp", await verify(sut, { timestamp_ms: u64be(h.timestamp_ms + 1) }), "bad-tree-head");
      },
    },
  ];
}

const concatHex = (hashes: string[]) => fromHex(hashes.join(""));

/** Every vector case whose file exists in dir. */
/** ed25519-rule.json: the client's verification accepts exactly what the protocol's rule accepts. */
function ed25519RuleCases(v: Json | undefined, file: string): ClientCase[] {
  if (!v) return [];
  return (v.cases as Json[]).map((c) => ({
    name: `client/vectors/ed25519-rule/${c.name.replace(/ /g, "-")}`,
    checks: `Ed25519 verification ${c.valid ? "accepts" : "refuses"} this signature: ${c.why} (docs/PROTOCOL.md, Notation).`,
    file,
    async run({ sut }) {
      const out = await primitive(sut, "ed25519-verify", { public_key: fromHex(c.public_key), message: fromHex(v.message), signature: fromHex(c.signature) });
      expectBytes("verify", out.valid, c.valid ? "01" : "00");
    },
  }));
}

export function vectorCases(dir: string): ClientCase[] {
  const cases: ClientCase[] = [];
  const read = (f: string) => (existsSync(join(dir, f)) ? (JSON.parse(readFileSync(join(dir, f), "utf8")) as Json) : undefined);
  const prim = read("primitives.json");
  if (prim) cases.push(...primitiveCases(prim, join(dir, "primitives.json")));
  const ks = read("key-signatures.json");
  if (ks) cases.push(...keySignatureCases(ks, join(dir, "key-signatures.json")));
  const env = read("envelope.json");
  if (env) cases.push(...envelopeCases(env, join(dir, "envelope.json")));
  cases.push(...sealedSendingCases(read("sealed-entry.json"), ks, dir));
  cases.push(...transparencyCases(read("transparency.json"), join(dir, "transparency.json")));
  cases.push(...ed25519RuleCases(read("ed25519-rule.json"), join(dir, "ed25519-rule.json")));
  void hex;
  return cases;
}
