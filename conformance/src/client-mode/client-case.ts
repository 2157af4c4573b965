/** A client-mode case: a named check run against the client under test (and a reference peer). */
import { create } from "@bufbuild/protobuf";
import { HarnessErrorKind, PrimitiveRequestSchema, type HarnessResponse } from "@sealpost/gen/sealpost/conformance/v1/client_harness_pb.js";
import type { Harness, RequestKind } from "./harness-client.js";

export interface ClientContext {
  /** The client under test. */
  sut: Harness;
  /** The reference implementation (the TypeScript client, in-process). */
  ref: Harness;
}

export interface ClientCase {
  name: string;
  checks: string;
  file?: string;
  run(ctx: ClientContext): Promise<void>;
}

export class ClientCheckFailure extends Error {
  override name = "ClientCheckFailure";
}

export function hex(b: Uint8Array | undefined): string {
  return b ? Buffer.from(b).toString("hex") : "(none)";
}

export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "hex"));
}

/** Sends a request and returns the result of the expected kind, or throws naming the error. */
export async function expectOk<K extends Exclude<HarnessResponse["kind"]["case"], "error" | undefined>>(
  h: Harness,
  kind: RequestKind,
  want: K,
): Promise<Extract<HarnessResponse["kind"], { case: K }>["value"]> {
  const res = await h.call(kind);
  if (res.kind.case === "error") {
    throw new ClientCheckFailure(`${kind.case}: ${HarnessErrorKind[res.kind.value.kind]}: ${res.kind.value.message}`);
  }
  if (res.kind.case !== want) throw new ClientCheckFailure(`${kind.case}: expected a ${want} response, got ${String(res.kind.case)}`);
  return res.kind.value as never;
}

export async function primitive(h: Harness, operation: string, inputs: Record<string, Uint8Array>, length = 0): Promise<Record<string, Uint8Array>> {
  const r = await expectOk(h, { case: "primitive", value: create(PrimitiveRequestSchema, { operation, inputs, length }) }, "primitive");
  return r.outputs;
}

/** A primitive call that must be refused with REJECTED. */
export async function primitiveRejected(h: Harness, operation: string, inputs: Record<string, Uint8Array>): Promise<void> {
  const res = await h.call({ case: "primitive", value: create(PrimitiveRequestSchema, { operation, inputs }) });
  if (res.kind.case !== "error" || res.kind.value.kind !== HarnessErrorKind.REJECTED) {
    throw new ClientCheckFailure(`${operation}: expected REJECTED, got ${res.kind.case === "error" ? HarnessErrorKind[res.kind.value.kind] : "a result"}`);
  }
}

export function expectBytes(what: string, got: Uint8Array | undefined, want: Uint8Array | string): void {
  const w = typeof want === "string" ? want : hex(want);
  if (hex(got) !== w) throw new ClientCheckFailure(`${what}: expected ${w.slice(0, 64)}${w.length > 64 ? "..." : ""}, got ${hex(got).slice(0, 64)}`);
}
