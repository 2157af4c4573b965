/**
 * The services the suite calls, from the generated protobuf-es descriptors, indexed by
 * "pkg.Service/Method". Used by the connect-es stack and by value builders that must
 * serialize messages (a signed device list signs serialized bytes).
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Health } from "@sealpost/gen/grpc/health/v1/health_pb.js";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";

export const services: DescService[] = [Health, DirectoryService, DeliveryService];

const methods = new Map<string, DescMethod>();
for (const s of services) for (const m of s.methods) methods.set(`${s.typeName}/${m.name}`, m);

export function findMethod(path: string): DescMethod | undefined {
  return methods.get(path.replace(/^\//, ""));
}

/** The .proto files (relative to proto/) that define the services, for proto-loader. */
export const serviceProtoFiles = [
  "grpc/health/v1/health.proto",
  "sealpost/directory/v1/directory_service.proto",
  "sealpost/delivery/v1/delivery_service.proto",
];
