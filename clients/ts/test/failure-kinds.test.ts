/** The one failure classification: what waits for the environment, what an item may retry, what never. */
import { createServer } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { describe, expect, it } from "vitest";
import { MessengerError } from "../src/core/messenger-errors.js";
import { defaultTransport } from "../src/platform/web.js";
import { InvalidMessageError } from "../src/crypto/errors.js";
import { RETRY_AFTER_HEADER, failureKind, isTransient } from "../src/transport/failure-kinds.js";

const connect = (code: Code, message = "x", headers?: [string, string][]) => new ConnectError(message, code, headers ? new Headers(headers) : undefined);
const systemError = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED", syscall: "connect" });

describe("failureKind", () => {
  it.each([
    ["server unreachable", connect(Code.Unavailable), "environment"],
    ["deadline", connect(Code.DeadlineExceeded), "environment"],
    ["token to renew", connect(Code.Unauthenticated), "environment"],
    ["overloaded, with a retry header", connect(Code.ResourceExhausted, "shedding", [[RETRY_AFTER_HEADER, "100"]]), "environment"],
    ["rate limited", connect(Code.ResourceExhausted, "rate limit: sends per device per minute"), "environment"],
    ["a socket error", systemError, "environment"],
    ["device lists that keep changing", connect(Code.Aborted), "item"],
    ["no prekeys yet", connect(Code.FailedPrecondition), "item"],
    ["an unexpected error", new Error("boom"), "item"],
    ["too big", connect(Code.ResourceExhausted, "shared_body is 5111836 bytes; max_body_bytes is 262144"), "permanent"],
    ["invalid", connect(Code.InvalidArgument), "permanent"],
    ["unknown account", connect(Code.NotFound), "permanent"],
    ["denied", connect(Code.PermissionDenied), "permanent"],
    ["a crypto failure", new InvalidMessageError("bad"), "permanent"],
    ["a revoked device", new MessengerError("device_revoked", "revoked"), "permanent"],
  ] as const)("%s: %s", (_what, err, kind) => {
    expect(failureKind(err)).toBe(kind);
    expect(isTransient(err)).toBe(kind !== "permanent");
  });
});

describe("the browser transport", () => {
  it("reports an unreachable server as UNAVAILABLE (fetch's bare TypeError would be UNKNOWN, an item failure)", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p)); // nothing listens there any more
      });
    });
    const client = createClient(DirectoryService, defaultTransport(`http://127.0.0.1:${port}`, []));
    const err = await client.getCertificateKeys({}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect(failureKind(err)).toBe("environment");
  });
});
