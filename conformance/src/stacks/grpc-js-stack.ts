/**
 * Stack 2: @grpc/grpc-js with @grpc/proto-loader reading proto/ at run time (protobuf.js
 * underneath): no generated code in common with the connect-es stack, so a server quirk
 * one stack tolerates the other may not. gRPC only.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { codeNames, type BidiStream, type CallOptions, type CallResult, type JsonObject, type ServerStream, type Stack } from "./stack.js";
import { EventQueue } from "./event-queue.js";
import { serviceProtoFiles } from "./schema-registry.js";

// keepCase: proto field names, as in the cases; longs/bytes/enums as proto3 JSON renders them.
const loaderOptions: protoLoader.Options = { keepCase: true, longs: String, enums: String, bytes: String, defaults: true, oneofs: false };

export interface GrpcJsOptions {
  baseUrl: string;
  protoDir: string;
}

export class GrpcJsStack implements Stack {
  readonly target = "grpc-js/grpc";
  readonly #client: grpc.Client;
  readonly #methods = new Map<string, protoLoader.MethodDefinition<object, object>>();

  constructor(opts: GrpcJsOptions) {
    const def = protoLoader.loadSync(serviceProtoFiles, { ...loaderOptions, includeDirs: [opts.protoDir] });
    for (const [name, value] of Object.entries(def)) {
      if ("format" in value || "fileDescriptorProtos" in value) continue; // message or enum types
      for (const [methodName, m] of Object.entries(value as protoLoader.ServiceDefinition)) {
        if (!m.path.endsWith(`/${methodName}`)) continue; // the camelCase alias of a method
        this.#methods.set(`${name}/${methodName}`, m as protoLoader.MethodDefinition<object, object>);
      }
    }
    const url = new URL(opts.baseUrl);
    const creds = url.protocol === "https:" ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    this.#client = new grpc.Client(`${url.hostname}:${port}`, creds);
  }

  hasMethod(path: string): boolean {
    return this.#methods.has(path.replace(/^\//, ""));
  }

  #method(path: string) {
    const m = this.#methods.get(path.replace(/^\//, ""));
    if (!m) throw new Error(`unknown method ${path}`);
    return m;
  }

  unary(path: string, request: JsonObject, opts: CallOptions): Promise<CallResult> {
    const m = this.#method(path);
    return new Promise((resolve) => {
      this.#client.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        request,
        metadata(opts.headers),
        { deadline: Date.now() + opts.timeoutMs },
        (err, res) => resolve(err ? { code: codeNames[err.code] ?? "UNKNOWN", message: err.details } : { code: "OK", response: clean(res) as JsonObject }),
      );
    });
  }

  serverStream(path: string, request: JsonObject, opts: CallOptions): ServerStream {
    const m = this.#method(path);
    const queue = new EventQueue();
    const call = this.#client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, request, metadata(opts.headers), {});
    call.on("data", (res) => queue.push({ kind: "message", response: clean(res) as JsonObject }));
    call.on("error", (err: grpc.ServiceError) => queue.push({ kind: "end", code: codeNames[err.code] ?? "UNKNOWN", message: err.details }));
    call.on("status", (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) queue.push({ kind: "end", code: "OK", message: "" });
    });
    return { next: (t) => queue.next(t), close: () => call.cancel() };
  }

  isBidi(path: string): boolean {
    const m = this.#methods.get(path.replace(/^\//, ""));
    return !!m && m.requestStream && m.responseStream;
  }

  bidiStream(path: string, opts: CallOptions): BidiStream {
    const m = this.#method(path);
    const queue = new EventQueue();
    const call = this.#client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, metadata(opts.headers), {});
    call.on("data", (res) => queue.push({ kind: "message", response: clean(res) as JsonObject }));
    call.on("error", (err: grpc.ServiceError) => queue.push({ kind: "end", code: codeNames[err.code] ?? "UNKNOWN", message: err.details }));
    call.on("status", (st: grpc.StatusObject) => {
      if (st.code === grpc.status.OK) queue.push({ kind: "end", code: "OK", message: "" });
    });
    return {
      next: (t) => queue.next(t),
      close: () => call.cancel(),
      send: (request) => void call.write(request),
      closeSend: () => void call.end(),
    };
  }

  async close(): Promise<void> {
    this.#client.close();
  }
}

function metadata(headers: Record<string, string>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return md;
}

/** protobuf.js toObject with defaults sets unset message fields to null: drop them. */
function clean(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clean);
  if (value && typeof value === "object") {
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) out[k] = clean(v);
    return out;
  }
  return value;
}
