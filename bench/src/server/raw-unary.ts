/**
 * A lean unary Send and SendSealed client for the load generator: Connect unary (binary) straight on
 * node:http2, a few connections round robin. connect-node's client costs ~250 us of CPU per
 * call, which on this 2-core box made the generator, not the server, the limit of the unary
 * figures; this one costs a fraction of that, so the figure measures the server. It speaks
 * exactly the Connect protocol (POST, application/proto, the message as the body), and any
 * answer but 200 is an error with the server's code and message.
 */
import { Http2Pool } from "./raw-http2.js";
import type * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  AckRequestSchema,
  AckResponseSchema,
  SendRequestSchema,
  SendResponseSchema,
  SendSealedRequestSchema,
  SendSealedResponseSchema,
  type AckResponse,
  type SendRequest,
  type SendResponse,
  type SendSealedRequest,
  type SendSealedResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";

export const SERVICE = "/sealpost.delivery.v1.DeliveryService";

export class RawUnaryPool {
  private readonly pool: Http2Pool;

  constructor(baseUrl: string, count: number) {
    this.pool = new Http2Pool(baseUrl, count);
  }

  /** Send as the device whose `authorization` header is given; the decoded answer. */
  async send(headers: Record<string, string>, req: SendRequest): Promise<SendResponse> {
    return fromBinary(SendResponseSchema, await this.call(`${SERVICE}/Send`, headers, toBinary(SendRequestSchema, req)));
  }

  /** SendSealed (no token): the decoded answer. */
  async sendSealed(req: SendSealedRequest): Promise<SendSealedResponse> {
    return fromBinary(SendSealedResponseSchema, await this.call(`${SERVICE}/SendSealed`, {}, toBinary(SendSealedRequestSchema, req)));
  }

  private call(path: string, headers: Record<string, string>, body: Uint8Array): Promise<Buffer> {
    return unaryCall(this.pool.next(), path, headers, body);
  }

  close(): void {
    this.pool.close();
  }
}

/** A unary call answered with an HTTP status other than 200 (Connect's error: status, headers, JSON body). */
export class UnaryError extends Error {
  constructor(
    readonly status: number,
    readonly headers: http2.IncomingHttpHeaders,
    message: string,
  ) {
    super(message);
  }
}

/** One Connect unary call (binary) on `session`: the answer's body, or a UnaryError for any status but 200. */
export function unaryCall(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>, body: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/proto",
      "connect-protocol-version": "1",
      "content-length": String(body.length),
      ...headers,
    });
    const chunks: Buffer[] = [];
    let answer: http2.IncomingHttpHeaders = {};
    stream.on("response", (h) => (answer = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", reject);
    stream.on("end", () => {
      const data = Buffer.concat(chunks);
      const status = Number(answer[":status"] ?? 0);
      if (status === 200) resolve(data);
      else reject(new UnaryError(status, answer, `${path} answered HTTP ${status}: ${data.toString("utf8").slice(0, 200)}`));
    });
    stream.end(body);
  });
}

/** Ack on `session` as the device whose `authorization` header is given. */
export async function ack(session: http2.ClientHttp2Session, headers: Record<string, string>, sequences: bigint[]): Promise<AckResponse> {
  const req = create(AckRequestSchema, { sequences });
  return fromBinary(AckResponseSchema, await unaryCall(session, `${SERVICE}/Ack`, headers, toBinary(AckRequestSchema, req)));
}
