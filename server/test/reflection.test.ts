/**
 * gRPC server reflection over the real network: what grpcurl does to discover services.
 */
import { describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ServerReflection, ServerReflectionRequestSchema, type ServerReflectionRequest } from "@sealpost/gen/grpc/reflection/v1/reflection_pb.js";
import { transportFor, useTestServer } from "@sealpost/test-support";

const server = useTestServer();

async function ask(...requests: ServerReflectionRequest["messageRequest"][]) {
  const client = createClient(ServerReflection, transportFor("grpc", server.url));
  async function* input() {
    for (const messageRequest of requests) yield create(ServerReflectionRequestSchema, { messageRequest });
  }
  const out = [];
  for await (const res of client.serverReflectionInfo(input())) out.push(res);
  return out;
}

describe("server reflection", () => {
  it("lists the services", async () => {
    const [res] = await ask({ case: "listServices", value: "" });
    expect(res.messageResponse.case).toBe("listServicesResponse");
    const names = res.messageResponse.case === "listServicesResponse" ? res.messageResponse.value.service.map((s) => s.name) : [];
    expect(names).toEqual(expect.arrayContaining(["sealpost.directory.v1.DirectoryService", "sealpost.delivery.v1.DeliveryService", "grpc.health.v1.Health"]));
  });

  it("returns the file of a method with its imports, dependencies first", async () => {
    const [res] = await ask({ case: "fileContainingSymbol", value: "sealpost.delivery.v1.DeliveryService.Send" });
    expect(res.messageResponse.case).toBe("fileDescriptorResponse");
    const files =
      res.messageResponse.case === "fileDescriptorResponse"
        ? res.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name)
        : [];
    expect(files.at(-1)).toBe("sealpost/delivery/v1/delivery_service.proto");
    expect(files).toContain("sealpost/directory/v1/address.proto");
    expect(files.indexOf("sealpost/directory/v1/address.proto")).toBeLessThan(files.length - 1);
  });

  it("answers unknown files and symbols with NOT_FOUND in the stream, and keeps serving", async () => {
    const [a, b, c] = await ask(
      { case: "fileByFilename", value: "nope.proto" },
      { case: "fileContainingSymbol", value: "no.such.Symbol" },
      { case: "fileByFilename", value: "sealpost/directory/v1/prekeys.proto" },
    );
    expect(a.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
    expect(b.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
    expect(c.messageResponse.case).toBe("fileDescriptorResponse");
  });
});
