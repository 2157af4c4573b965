/**
 * No work before authentication: calls that need a token and arrive without a valid one are
 * answered UNAUTHENTICATED from their headers, on every protocol, without decompressing or
 * parsing the body. Proof: a body that is not even valid gzip (declared gzip-compressed) is
 * answered UNAUTHENTICATED without a token, while the same body with a valid token fails in
 * decompression. Open methods (GetLimits, Health) are not gated.
 */
import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { createTestAccount, envelope, rawCall, rawProtocols, useTestServer, type RawProtocol } from "@sealpost/test-support";

const server = useTestServer();
const SEND = "/sealpost.delivery.v1.DeliveryService/Send";
const RECEIVE = "/sealpost.delivery.v1.DeliveryService/Receive";

function call(protocol: RawProtocol, path: string, body: Uint8Array, headers: Record<string, string>, streaming = false) {
  const framed = protocol === "grpc" || protocol === "grpc-web" || streaming;
  return rawCall({
    baseUrl: server.url,
    path,
    protocol,
    streaming,
    body: framed ? envelope(body, headers["grpc-encoding"] || headers["connect-content-encoding"] ? 1 : 0) : body,
    headers,
    timeoutMs: 5_000,
  });
}

/** Declares gzip the way each protocol does. */
function gzipHeader(protocol: RawProtocol, streaming = false): Record<string, string> {
  if (protocol === "grpc" || protocol === "grpc-web") return { "grpc-encoding": "gzip" };
  return streaming ? { "connect-content-encoding": "gzip" } : { "content-encoding": "gzip" };
}

describe("pre-auth gate", () => {
  for (const protocol of rawProtocols) {
    it(`${protocol}: no token, a forged token and an expired one are UNAUTHENTICATED before the body is touched`, async () => {
      const notGzip = randomBytes(64);
      const none = await call(protocol, SEND, notGzip, gzipHeader(protocol));
      expect({ code: none.code, message: none.message }).toEqual({
        code: "unauthenticated",
        message: "missing authorization header (expected 'Bearer <token>' from Authenticate)",
      });
      const forged = await call(protocol, SEND, notGzip, { ...gzipHeader(protocol), authorization: "Bearer v1.someone.1.99999999999999.AAAA" });
      expect({ code: forged.code, message: forged.message }).toEqual({ code: "unauthenticated", message: "token signature is invalid" });
      const expired = server.context.tokens.issue("someone", 1, -1000).token;
      const old = await call(protocol, SEND, notGzip, { ...gzipHeader(protocol), authorization: `Bearer ${expired}` });
      expect({ code: old.code, message: old.message }).toEqual({ code: "unauthenticated", message: "token expired; authenticate again" });
      // A server stream too.
      const stream = await call(protocol, RECEIVE, notGzip, gzipHeader(protocol, true), true);
      expect(stream.code).toBe("unauthenticated");
    });
  }

  it("with a valid token the same body reaches decompression (so the gate is what answered above); open methods pass the gate", async () => {
    const alice = await createTestAccount(server.url, "gate-alice", { oneTimePrekeys: 1 });
    const withToken = await call("connect-proto-h2", SEND, randomBytes(64), {
      ...gzipHeader("connect-proto-h2"),
      authorization: `Bearer ${alice.devices[0].token}`,
    });
    expect(withToken.code).not.toBe("unauthenticated");
    expect(withToken.code).not.toBe("ok");
    // A gzip bomb without a token (5 MiB of zeros in ~5 KB) is refused the same way.
    const bomb = gzipSync(Buffer.alloc(5 * 1024 * 1024));
    expect((await call("connect-proto-h2", SEND, bomb, gzipHeader("connect-proto-h2"))).code).toBe("unauthenticated");
    // GetLimits needs no token.
    expect((await call("connect-proto-h2", "/sealpost.delivery.v1.DeliveryService/GetLimits", new Uint8Array(0), {})).code).toBe("ok");
  });

  it("bounds each method family's request size after decompression: a gzip bomb to an open method is refused before it is parsed", async () => {
    const bomb = gzipSync(Buffer.alloc(5 * 1024 * 1024));
    const res = await call("connect-proto-h2", "/sealpost.directory.v1.DirectoryService/CreateAccount", bomb, gzipHeader("connect-proto-h2"));
    expect(res.code).toBe("resource_exhausted");
    expect(res.message).toMatch(/larger than configured readMaxBytes 262144/);
  });
});
