/**
 * The foundation over the real network stack: one port answering Connect (HTTP/1.1 JSON and
 * h2 binary), gRPC and gRPC-Web with the generated client, and @grpc/grpc-js as a second,
 * independent client stack; the right codes for unknown routes, malformed and oversize bodies.
 */
import { describe, expect, it } from "vitest";
import { createClient, Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { request as httpRequest } from "node:http";
import * as http2 from "node:http2";
import { fileURLToPath } from "node:url";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@sealpost/gen/grpc/health/v1/health_pb.js";
import { allProtocols, transportFor, useTestServer } from "@sealpost/test-support";
import { READ_MAX_BYTES } from "../src/server.js";
import { H2_CONNECTION_WINDOW_BYTES, H2_STREAM_WINDOW_BYTES } from "../src/one-port.js";

const protoDir = fileURLToPath(new URL("../../proto", import.meta.url));

/**
 * DeliveryService's GetLimits under a service name no server has, so the generated client
 * calls a truly unknown procedure (every declared method is implemented now).
 */
const nopeService = (() => {
  const fake = { ...DeliveryService, typeName: "sealpost.nope.v1.NopeService" } as typeof DeliveryService;
  const getLimits = { ...DeliveryService.method.getLimits, parent: fake };
  return Object.assign(fake, { methods: [getLimits], method: { ...DeliveryService.method, getLimits } }) as typeof DeliveryService;
})();

const server = useTestServer();

/** A raw HTTP/1.1 POST, to see exactly what a non-library client gets. */
function post(
  path: string,
  body: Buffer | string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}${path}`, { method: "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("one port, three protocols", () => {
  it("answers a health check over plain HTTP/1.1 Connect JSON", async () => {
    const res = await post("/grpc.health.v1.Health/Check", "{}", { "content-type": "application/json", "connect-protocol-version": "1" });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: "SERVING" });
  });

  for (const protocol of allProtocols) {
    it(`answers health Check and Watch over ${protocol} with the generated client`, async () => {
      const client = createClient(Health, transportFor(protocol, server.url));
      const res = await client.check({ service: "sealpost.delivery.v1.DeliveryService" });
      expect(res.status).toBe(Status.SERVING);
      const abort = new AbortController();
      const first = await client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]().next();
      abort.abort();
      expect(first.value?.status).toBe(Status.SERVING);
      await expect(client.check({ service: "no.such.Service" })).rejects.toMatchObject({ code: Code.NotFound });
    });

    it(`answers UNIMPLEMENTED for a procedure the server does not have over ${protocol}`, async () => {
      const client = createClient(nopeService, transportFor(protocol, server.url));
      const err = await client.getLimits({}).catch((e) => e);
      expect(ConnectError.from(err).code).toBe(Code.Unimplemented);
    });
  }

  it("is reachable through @grpc/grpc-js loading the same .proto files", async () => {
    const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [protoDir], enums: String });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      const res = await new Promise<any>((resolve, reject) =>
        client.Check({ service: "" }, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))),
      );
      expect(res.status).toBe("SERVING");
    } finally {
      client.close();
    }
  });

  it("gives grpc-js UNIMPLEMENTED for a method the server does not have", async () => {
    const def = protoLoader.loadSync("sealpost/delivery/v1/delivery_service.proto", { includeDirs: [protoDir] });
    const pkg = grpc.loadPackageDefinition(def) as any;
    // A client of a service name that does not exist on the server.
    const Fake = grpc.makeGenericClientConstructor(
      { Nope: { ...pkg.sealpost.delivery.v1.DeliveryService.service.GetLimits, path: "/sealpost.nope.v1.NopeService/Nope" } },
      "NopeService",
    );
    const client = new Fake(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure()) as any;
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) => client.Nope({}, (e: grpc.ServiceError) => resolve(e)));
      expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      client.close();
    }
  });
});

describe("HTTP/2 receive windows", () => {
  it("a client may send 1 MiB per stream and 4 MiB per connection before the server's window updates", async () => {
    const session = http2.connect(server.url);
    try {
      await new Promise<void>((resolve, reject) => session.once("remoteSettings", () => resolve()).once("error", reject));
      expect(session.remoteSettings.initialWindowSize).toBe(H2_STREAM_WINDOW_BYTES);
      // What this client may still send on the connection: the server's window once its WINDOW_UPDATE is in.
      await expect.poll(() => session.state.remoteWindowSize).toBe(H2_CONNECTION_WINDOW_BYTES);
    } finally {
      session.close();
    }
  });
});

describe("bad requests get precise codes", () => {
  it("unknown route over HTTP/1.1 is 404", async () => {
    const res = await post("/sealpost.nope.v1.NopeService/Nope", "{}", { "content-type": "application/json" });
    expect(res.status).toBe(404);
  });

  it("a malformed JSON body is invalid_argument", async () => {
    const res = await post("/grpc.health.v1.Health/Check", "{not json", { "content-type": "application/json", "connect-protocol-version": "1" });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).code).toBe("invalid_argument");
  });

  it("a malformed binary body is invalid_argument with the parse error named", async () => {
    // connect-es says INTERNAL (grpc's table does); the schema promises INVALID_ARGUMENT (parse-errors.ts).
    const res = await post("/grpc.health.v1.Health/Check", Buffer.from([0x0a, 0xff, 0xff]), {
      "content-type": "application/proto",
      "connect-protocol-version": "1",
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toEqual({ code: "invalid_argument", message: "parse binary: premature EOF" });
  });

  it("an unsupported content type is rejected without reaching the service", async () => {
    const res = await post("/grpc.health.v1.Health/Check", "{}", { "content-type": "text/plain" });
    expect(res.status).toBe(415);
  });

  for (const protocol of allProtocols) {
    it(`an oversize message is resource_exhausted over ${protocol}`, async () => {
      const client = createClient(Health, transportFor(protocol, server.url));
      const err = await client.check({ service: "x".repeat(READ_MAX_BYTES + 10) }).catch((e) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
    });
  }
});
