/**
 * Stack 1: connect-es (@connectrpc/connect-node) with the generated protobuf-es stubs.
 * Speaks Connect (JSON or binary, HTTP/1.1 or h2), gRPC (h2) and gRPC-Web.
 */
import { fromJson, toJson, type DescMethod, type DescMethodStreaming, type DescMethodUnary, type JsonValue } from "@bufbuild/protobuf";
import { ConnectError, createContextValues, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { codeNames, type BidiStream, type CallOptions, type CallResult, type JsonObject, type ServerStream, type Stack } from "./stack.js";
import { EventQueue } from "./event-queue.js";
import { findMethod } from "./schema-registry.js";
import { Pushable } from "@sealpost/client/util";

export type ConnectProtocol = "connect" | "grpc" | "grpc-web";

export interface ConnectEsOptions {
  baseUrl: string;
  protocol: ConnectProtocol;
  /** HTTP version for connect and grpc-web (gRPC is always h2). */
  httpVersion?: "1.1" | "2";
  /** Codec for connect and grpc-web. */
  codec?: "json" | "proto";
}

/** The default variants: Connect JSON over HTTP/1.1 (what curl does), binary elsewhere. */
export function connectEsTargetName(o: ConnectEsOptions): string {
  const { httpVersion, codec } = withDefaults(o);
  if (o.protocol === "grpc") return "connect-es/grpc";
  return `connect-es/${o.protocol}+${codec}/h${httpVersion === "1.1" ? "1" : "2"}`;
}

function withDefaults(o: ConnectEsOptions): Required<ConnectEsOptions> {
  return {
    ...o,
    httpVersion: o.httpVersion ?? (o.protocol === "grpc" ? "2" : "1.1"),
    codec: o.codec ?? (o.protocol === "connect" ? "json" : "proto"),
  };
}

function makeTransport(o: Required<ConnectEsOptions>): Transport {
  const useBinaryFormat = o.codec === "proto";
  switch (o.protocol) {
    case "connect":
      return createConnectTransport({ baseUrl: o.baseUrl, httpVersion: o.httpVersion, useBinaryFormat });
    case "grpc":
      return createGrpcTransport({ baseUrl: o.baseUrl });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl: o.baseUrl, httpVersion: o.httpVersion, useBinaryFormat });
  }
}

const jsonOut = { useProtoFieldName: true, alwaysEmitImplicit: true } as const;

function errorResult(err: unknown): { code: string; message: string } {
  const e = ConnectError.from(err);
  return { code: codeNames[e.code] ?? "UNKNOWN", message: e.rawMessage };
}

export class ConnectEsStack implements Stack {
  readonly target: string;
  readonly #transport: Transport;
  /** Full-duplex streams need HTTP/2: gRPC, or Connect over h2. */
  readonly #bidi: boolean;

  constructor(opts: ConnectEsOptions) {
    this.target = connectEsTargetName(opts);
    const o = withDefaults(opts);
    this.#transport = makeTransport(o);
    this.#bidi = o.protocol === "grpc" || (o.protocol === "connect" && o.httpVersion === "2");
  }

  hasMethod(path: string): boolean {
    return findMethod(path) !== undefined;
  }

  #method(path: string): DescMethod {
    const m = findMethod(path);
    if (!m) throw new Error(`unknown method ${path}`);
    return m;
  }

  async unary(path: string, request: JsonObject, opts: CallOptions): Promise<CallResult> {
    const method = this.#method(path);
    if (method.methodKind !== "unary") throw new Error(`${path} is not unary`);
    const input = fromJson(method.input, request as JsonValue);
    try {
      const res = await this.#transport.unary(method as DescMethodUnary, undefined, opts.timeoutMs, opts.headers, input, createContextValues());
      return { code: "OK", response: toJson(method.output, res.message, jsonOut) as JsonObject };
    } catch (err) {
      return errorResult(err);
    }
  }

  serverStream(path: string, request: JsonObject, opts: CallOptions): ServerStream {
    const method = this.#method(path);
    if (method.methodKind !== "server_streaming") throw new Error(`${path} is not server-streaming`);
    const input = fromJson(method.input, request as JsonValue);
    const abort = new AbortController();
    const queue = new EventQueue();
    void (async () => {
      try {
        const res = await this.#transport.stream(method as DescMethodStreaming, abort.signal, undefined, opts.headers, single(input), createContextValues());
        for await (const m of res.message) queue.push({ kind: "message", response: toJson(method.output, m, jsonOut) as JsonObject });
        queue.push({ kind: "end", code: "OK", message: "" });
      } catch (err) {
        queue.push({ kind: "end", ...errorResult(err) });
      }
    })();
    return { next: (t) => queue.next(t), close: () => abort.abort() };
  }

  isBidi(path: string): boolean {
    return findMethod(path)?.methodKind === "bidi_streaming";
  }

  bidiStream(path: string, opts: CallOptions): BidiStream | undefined {
    if (!this.#bidi) return undefined;
    const method = this.#method(path);
    if (method.methodKind !== "bidi_streaming") throw new Error(`${path} is not bidi-streaming`);
    const abort = new AbortController();
    const queue = new EventQueue();
    const input = new Pushable<unknown>();
    void (async () => {
      try {
        const res = await this.#transport.stream(
          method as DescMethodStreaming,
          abort.signal,
          undefined,
          opts.headers,
          input as AsyncIterable<never>,
          createContextValues(),
        );
        for await (const m of res.message) queue.push({ kind: "message", response: toJson(method.output, m, jsonOut) as JsonObject });
        queue.push({ kind: "end", code: "OK", message: "" });
      } catch (err) {
        queue.push({ kind: "end", ...errorResult(err) });
      }
    })();
    return {
      next: (t) => queue.next(t),
      close: () => abort.abort(),
      send: (request) => input.push(fromJson(method.input, request as JsonValue)),
      closeSend: () => input.end(),
    };
  }

  async close(): Promise<void> {}
}

async function* single<T>(value: T): AsyncIterable<T> {
  yield value;
}
