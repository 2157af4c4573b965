import { create, fromBinary } from "@bufbuild/protobuf";
import { SignedGroupStateSchema } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { SenderKeyDistributionSchema } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { concatBytes, fromHex, toHex } from "../src/crypto/bytes.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { GROUP_STATE_LABEL } from "../src/protocol/group-labels.js";
import { GroupStateError, verifyGenesis, verifyGroupStateUpdate, type VerifiedGroupState } from "../src/protocol/group-state.js";
import { kdfChain, ZERO_NONCE } from "../src/protocol/kdf.js";
import { unpad } from "../src/protocol/padding.js";
import { parseSenderKeyBody, planSenderKeyDecrypt, processSenderKeyDistribution } from "../src/protocol/sender-keys.js";
import { buildGroupVectors } from "../src/tools/group-vector-builders.js";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../conformance/vectors");
const load = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, name), "utf8"));

describe("group vectors", () => {
  it.each([
    ["noble", (random: (n: number) => Uint8Array) => createNobleProvider({ random })],
    ["node", (random: (n: number) => Uint8Array) => createNodeProvider({ random })],
  ])("rebuild byte-identically with the %s provider", async (_n, make) => {
    const built = await buildGroupVectors(make);
    for (const [name, value] of Object.entries(built)) expect(JSON.stringify(value, null, 2) + "\n").toBe(fs.readFileSync(path.join(dir, name), "utf8"));
  });

  it("sender-keys.json replays from the recorded keys alone", async () => {
    const p = createNodeProvider();
    const v = load("sender-keys.json");
    const dist = fromBinary(SenderKeyDistributionSchema, fromHex(v.distribution.serialized));
    expect(toHex(dist.chainKey)).toBe(v.distribution.chain_key);
    expect(toHex(await p.ed25519PublicKey(fromHex(v.signing_seed)))).toBe(v.distribution.signing_key);
    let ck = fromHex(v.distribution.chain_key);
    for (const m of v.messages) {
      expect(toHex(ck)).toBe(m.chain_key);
      const step = kdfChain(ck);
      expect(toHex(step.messageKey)).toBe(m.message_key);
      const padded = await p.aesGcmOpen(step.messageKey, ZERO_NONCE, fromHex(m.ciphertext), fromHex(m.header));
      expect(padded).toBeDefined();
      expect(toHex(unpad(padded!))).toBe(m.content);
      expect(await p.ed25519Verify(fromHex(v.distribution.signing_key), concatBytes(fromHex(m.header), fromHex(m.ciphertext)), fromHex(m.signature))).toBe(
        true,
      );
      ck = step.chainKey;
    }
    const record = processSenderKeyDistribution(undefined, dist, 0);
    for (const d of v.deliveries) {
      let outcome = "ok";
      try {
        const plan = await planSenderKeyDecrypt(p, record, parseSenderKeyBody(fromHex(v.messages[d.deliver].shared_body))!);
        expect(toHex(plan.plaintext)).toBe(d.plaintext);
        plan.commit();
      } catch (e) {
        outcome = (e as { code: string }).code;
      }
      expect(outcome).toBe(d.outcome);
      expect(record.chains[0].iteration).toBe(d.next_iteration);
      expect(record.chains[0].skipped.map((k) => k.iteration)).toEqual(d.skipped_iterations);
    }
    const fresh = processSenderKeyDistribution(undefined, dist, 0);
    for (const r of v.rejections) {
      await expect(planSenderKeyDecrypt(p, fresh, parseSenderKeyBody(fromHex(r.shared_body))!)).rejects.toThrow(expect.objectContaining({ code: r.error }));
    }
  });

  it("group-state.json verifies from the recorded keys alone; every rejection names its problem", async () => {
    const p = createNodeProvider();
    const v = load("group-state.json");
    const keys = new Map<string, Uint8Array>(v.devices.map((d: { address: string; signing_key: string }) => [d.address, fromHex(d.signing_key)]));
    const lookup = (d: { accountId: string; deviceId: number }) => keys.get(`${d.accountId}.${d.deviceId}`);
    const signed = (s: { state: string; signer: string; signature: string }) => {
      const [accountId, deviceId] = s.signer.split(".");
      return create(SignedGroupStateSchema, { state: fromHex(s.state), signer: { accountId, deviceId: Number(deviceId) }, signature: fromHex(s.signature) });
    };
    const versions: VerifiedGroupState[] = [];
    for (const [i, c] of v.chain.entries()) {
      expect(toHex(concatBytes(GROUP_STATE_LABEL, fromHex(c.state)))).toBe(c.signed_bytes);
      const vs = i === 0 ? await verifyGenesis(p, signed(c), lookup) : await verifyGroupStateUpdate(p, versions[i - 1], signed(c), lookup);
      expect(toHex(vs.hash)).toBe(c.hash);
      versions.push(vs);
    }
    for (const r of v.rejected) {
      let problem = "ok";
      try {
        await verifyGroupStateUpdate(p, versions[r.against_version - 1], signed(r), lookup);
      } catch (e) {
        if (!(e instanceof GroupStateError)) throw e;
        problem = e.problem;
      }
      expect(problem).toBe(r.problem);
    }
  });
});
