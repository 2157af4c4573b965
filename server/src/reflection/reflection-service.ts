/**
 * gRPC server reflection (grpc.reflection.v1), so grpcurl and `buf curl` can list and call
 * sealpost's services without a local copy of the schema. Answers list_services,
 * file_by_filename and file_containing_symbol from the descriptors embedded in the
 * generated code. A bidi stream: it needs HTTP/2 (gRPC, or Connect over h2).
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { create, createRegistry, toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  ErrorResponseSchema,
  FileDescriptorResponseSchema,
  ListServiceResponseSchema,
  type ServerReflection,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "@sealpost/gen/grpc/reflection/v1/reflection_pb.js";

/** Files in dependency order, each once: the file and everything it imports. */
function withDependencies(file: DescFile, seen = new Set<string>(), out: DescFile[] = []): DescFile[] {
  if (seen.has(file.proto.name)) return out;
  seen.add(file.proto.name);
  for (const dep of file.dependencies) withDependencies(dep, seen, out);
  out.push(file);
  return out;
}

export function reflectionService(serviceFiles: DescFile[], serviceNames: string[]): ServiceImpl<typeof ServerReflection> {
  const registry = createRegistry(...serviceFiles);
  const byName = new Map<string, DescFile>();
  for (const f of serviceFiles.flatMap((f) => withDependencies(f))) byName.set(f.proto.name, f);

  const fileResponse = (file: DescFile) => ({
    case: "fileDescriptorResponse" as const,
    value: create(FileDescriptorResponseSchema, { fileDescriptorProto: withDependencies(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) }),
  });
  const error = (errorCode: Code, errorMessage: string) => ({
    case: "errorResponse" as const,
    value: create(ErrorResponseSchema, { errorCode, errorMessage }),
  });
  const notFound = (what: string) => error(Code.NotFound, `${what} not found`);

  const answer = (req: ServerReflectionRequest): ServerReflectionResponse => {
    const r = req.messageRequest;
    let messageResponse: ServerReflectionResponse["messageResponse"];
    switch (r.case) {
      case "listServices":
        messageResponse = { case: "listServicesResponse", value: create(ListServiceResponseSchema, { service: serviceNames.map((name) => ({ name })) }) };
        break;
      case "fileByFilename": {
        const f = byName.get(r.value);
        messageResponse = f ? fileResponse(f) : notFound(`file ${JSON.stringify(r.value)}`);
        break;
      }
      case "fileContainingSymbol": {
        const symbol = r.value.replace(/^\./, "");
        // A method is named "pkg.Service.Method": look up its service.
        const desc = registry.get(symbol) ?? registry.get(symbol.slice(0, Math.max(0, symbol.lastIndexOf("."))));
        messageResponse = desc && "file" in desc ? fileResponse(desc.file) : notFound(`symbol ${JSON.stringify(r.value)}`);
        break;
      }
      case "fileContainingExtension":
      case "allExtensionNumbersOfType":
        // sealpost's schema defines no extensions.
        messageResponse = error(Code.Unimplemented, "no extensions are defined");
        break;
      default:
        throw new ConnectError("reflection request has no message_request set", Code.InvalidArgument);
    }
    return create(ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse });
  };

  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield answer(req);
    },
  };
}
