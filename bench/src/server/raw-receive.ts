/**
 * A lean Receive stream for the load generator: the Connect server-streaming protocol
 * straight on a node:http2 stream (the request as one envelope, then the responses as
 * envelopes), as session-load.ts does for Session. connect-node's streaming client spent
 * more CPU per delivered message than the server did routing it, which on this 2-core box
 * made the generator part of every delivery figure.
 */
import type * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DeliveryService, ReceiveRequestSchema, ReceiveResponseSchema, type ReceiveResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { envelope, EnvelopeReader } from "./raw-http2.js";

const RECEIVE_PATH = `/${DeliveryService.typeName}/${DeliveryService.method.receive.name}`;

export interface RawReceive {
  /** Settles when the stream ends: resolves on a clean end, rejects with the server's error. */
  done: Promise<void>;
  /** Cancels the stream (the server sees the client go away). */
  close(): void;
}

/** Opens Receive for the device whose `authorization` header is given; `onEvent` gets every response in order. */
export function openReceive(session: http2.ClientHttp2Session, headers: Record<string, string>, onEvent: (r: ReceiveResponse) => void): RawReceive {
  const stream = session.request({
    ":method": "POST",
    ":path": RECEIVE_PATH,
    "content-type": "application/connect+proto",
    "connect-protocol-version": "1",
    ...headers,
  });
  let closing = false;
  let endError: Error | undefined;
  const reader = new EnvelopeReader(
    (payload) => onEvent(fromBinary(ReceiveResponseSchema, payload)),
    (json) => {
      if (json.includes('"error"')) endError = new Error(`Receive ended: ${json}`);
    },
  );
  stream.on("data", (chunk: Buffer) => reader.push(chunk));
  const done = new Promise<void>((resolve, reject) => {
    stream.once("error", (err) => (closing ? resolve() : reject(err)));
    stream.once("close", () => (endError && !closing ? reject(endError) : resolve()));
  });
  stream.end(envelope(toBinary(ReceiveRequestSchema, create(ReceiveRequestSchema, { afterSequence: 0n, maxInFlight: 0 }))));
  return {
    done,
    close: () => {
      closing = true;
      stream.close(http2Cancel);
    },
  };
}

/** NGHTTP2_CANCEL: the client is done with the stream. */
const http2Cancel = 0x8;
