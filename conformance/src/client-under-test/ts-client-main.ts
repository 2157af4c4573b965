/**
 * The TypeScript client as a client under test: the harness protocol on stdin/stdout.
 *   sealpost-conformance client --command 'npx tsx conformance/src/client-under-test/ts-client-main.ts'
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { HarnessRequestSchema, HarnessResponseSchema } from "@sealpost/gen/sealpost/conformance/v1/client_harness_pb.js";
import { encodeFrame, readFrames } from "../client-mode/framing.js";
import { TsHarness } from "./ts-client.js";

const harness = new TsHarness();
for await (const frame of readFrames(process.stdin)) {
  const res = await harness.handle(fromBinary(HarnessRequestSchema, frame));
  process.stdout.write(encodeFrame(toBinary(HarnessResponseSchema, res)));
}
