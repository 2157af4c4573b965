/**
 * A deliberately wrong client under test: the TypeScript client behind the harness, but its
 * Ed25519 signatures have one bit flipped, it accepts every Ed25519 signature, every decrypted
 * text is altered, and it accepts every sender certificate and every key transparency proof.
 * Client mode must report each.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { HarnessRequestSchema, HarnessResponseSchema } from "@sealpost/gen/sealpost/conformance/v1/client_harness_pb.js";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { encodeFrame, readFrames } from "../../src/client-mode/framing.js";
import { TsHarness } from "../../src/client-under-test/ts-client.js";

const harness = new TsHarness();
for await (const frame of readFrames(process.stdin)) {
  const req = fromBinary(HarnessRequestSchema, frame);
  const res = await harness.handle(req);
  if (res.kind.case === "primitive" && res.kind.value.outputs.signature) res.kind.value.outputs.signature[0] ^= 1;
  if (res.kind.case === "primitive" && res.kind.value.outputs.problem) res.kind.value.outputs.problem = new Uint8Array(0);
  if (res.kind.case === "primitive" && res.kind.value.outputs.valid) res.kind.value.outputs.valid = new Uint8Array([1]);
  if (res.kind.case === "decrypt") {
    const c = fromBinary(ContentSchema, res.kind.value.content);
    if (c.body.case === "text") c.body.value.body += "!";
    res.kind.value.content = toBinary(ContentSchema, c);
  }
  process.stdout.write(encodeFrame(toBinary(HarnessResponseSchema, create(HarnessResponseSchema, res))));
}
