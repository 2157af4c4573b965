/**
 * The calls on every message's path, served on the native HTTP/2 stream: Receive and
 * Session (native-stream.ts), Send, SendSealed and Ack (native-unary.ts). A Receive stream mostly waits,
 * and through connect-node each one held ~50-60 KiB of per-call pipeline; a Session carries
 * thousands of messages a second, and connect-es's per-message async-iterable chain and
 * serialization were ~30% of the server's CPU; a unary Send paid ~0.3-0.5 ms of per-call
 * pipeline. Everything these paths do not take goes on to connect-node, which answers the
 * same (the tests compare both paths).
 */
import type * as http2 from "node:http2";
import {
  AckRequestSchema,
  AckResponseSchema,
  DeliveryService,
  ReceiveRequestSchema,
  SendRequestSchema,
  SendResponseSchema,
  SendSealedRequestSchema,
  SendSealedResponseSchema,
  SessionRequestSchema,
  type AckRequest,
  type AckResponse,
  type ReceiveRequest,
  type ReceiveResponse,
  type SendRequest,
  type SendResponse,
  type SendSealedRequest,
  type SendSealedResponse,
  type SessionRequest,
  type SessionResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { RequestHandler } from "../one-port.js";
import type { AuthenticatedDevice } from "../auth/authenticator.js";
import { decodeMessage, nativeWire, readBody, singleEnvelope, type Wire } from "./native-wire.js";
import { RequestMessages, serveStream, type StreamCallDeps } from "./native-stream.js";
import { serveUnary, type UnaryMethod } from "./native-unary.js";
import { receiveResponseFrame, sessionResponseFrame } from "./session-encoding.js";

const path = (m: { name: string }) => `/${DeliveryService.typeName}/${m.name}`;
const RECEIVE_PATH = path(DeliveryService.method.receive);
const SESSION_PATH = path(DeliveryService.method.session);
const SEND_PATH = path(DeliveryService.method.send);
const SEND_SEALED_PATH = path(DeliveryService.method.sendSealed);
const ACK_PATH = path(DeliveryService.method.ack);

export interface NativeDeliveryDeps extends StreamCallDeps {
  /** The device of the request's bearer token (signature and expiry), or UNAUTHENTICATED. */
  token(req: http2.Http2ServerRequest): AuthenticatedDevice;
  /** The device of a checked token if it is still listed, or UNAUTHENTICATED (revoked). */
  listed(token: AuthenticatedDevice): Promise<AuthenticatedDevice>;
  /** The mailbox stream of the device (what the Receive RPC yields). */
  mailbox(device: AuthenticatedDevice, req: ReceiveRequest, signal: AbortSignal): AsyncGenerator<ReceiveResponse>;
  /** The Session of the device over its request messages (what the Session RPC yields). */
  session(device: AuthenticatedDevice, requests: AsyncIterable<SessionRequest>, signal: AbortSignal): AsyncGenerator<SessionResponse>;
  /** Send and Ack for the device of a checked token (they check it is still listed, as the unary RPCs do). */
  send(token: AuthenticatedDevice, req: SendRequest): Promise<SendResponse>;
  ack(token: AuthenticatedDevice, req: AckRequest): Promise<AckResponse>;
  /** SendSealed (no token) for a caller at that address. */
  sendSealed(req: SendSealedRequest, callerAddress: string): Promise<SendSealedResponse>;
  /** Largest request message accepted, per call (as connect-node's readMaxBytes for the method). */
  receiveReadMaxBytes: number;
  sessionReadMaxBytes: number;
  sendReadMaxBytes: number;
  ackReadMaxBytes: number;
}

export function withNativeDelivery(next: RequestHandler, d: NativeDeliveryDeps): RequestHandler {
  const send: UnaryMethod<typeof SendRequestSchema, typeof SendResponseSchema> = {
    procedure: "Send",
    method: SEND_PATH.slice(1),
    input: SendRequestSchema,
    output: SendResponseSchema,
    readMaxBytes: d.sendReadMaxBytes,
    handle: (req, call) => d.send(d.token(call), req),
  };
  const ack: UnaryMethod<typeof AckRequestSchema, typeof AckResponseSchema> = {
    procedure: "Ack",
    method: ACK_PATH.slice(1),
    input: AckRequestSchema,
    output: AckResponseSchema,
    readMaxBytes: d.ackReadMaxBytes,
    handle: (req, call) => d.ack(d.token(call), req),
  };
  const sendSealed: UnaryMethod<typeof SendSealedRequestSchema, typeof SendSealedResponseSchema> = {
    procedure: "SendSealed",
    method: SEND_SEALED_PATH.slice(1),
    input: SendSealedRequestSchema,
    output: SendSealedResponseSchema,
    readMaxBytes: d.sendReadMaxBytes,
    handle: (req, call) => d.sendSealed(req, call.socket?.remoteAddress ?? "unknown"),
  };
  return (req, res) => {
    const r2 = req as http2.Http2ServerRequest;
    const s2 = res as http2.Http2ServerResponse;
    let wire: Wire | undefined;
    switch (req.url) {
      case SEND_PATH:
        if ((wire = nativeWire(req, SEND_PATH, "unary"))) return serveUnary(send, wire, r2, s2, d);
        break;
      case SEND_SEALED_PATH:
        if ((wire = nativeWire(req, SEND_SEALED_PATH, "unary"))) return serveUnary(sendSealed, wire, r2, s2, d);
        break;
      case ACK_PATH:
        if ((wire = nativeWire(req, ACK_PATH, "unary"))) return serveUnary(ack, wire, r2, s2, d);
        break;
      case RECEIVE_PATH:
        if ((wire = nativeWire(req, RECEIVE_PATH, "stream"))) return serveReceive(wire, r2, s2, d);
        break;
      case SESSION_PATH:
        if ((wire = nativeWire(req, SESSION_PATH, "stream"))) return serveSession(wire, r2, s2, d);
        break;
    }
    next(req, res);
  };
}

function serveReceive(wire: Wire, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, d: NativeDeliveryDeps): void {
  serveStream("Receive", wire, req, res, d, async (out, signal) => {
    const { flags, payload } = singleEnvelope(await readBody(req, d.receiveReadMaxBytes), "server-streaming");
    const request = decodeMessage(ReceiveRequestSchema, flags, payload, wire, RECEIVE_PATH.slice(1), d.log);
    const device = await d.listed(d.token(req));
    for await (const ev of d.mailbox(device, request, signal)) {
      const wait = out.frame(receiveResponseFrame(ev));
      if (wait) await wait;
    }
  });
}

function serveSession(wire: Wire, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, d: NativeDeliveryDeps): void {
  serveStream("Session", wire, req, res, d, async (out, signal) => {
    const device = await d.listed(d.token(req));
    const requests = new RequestMessages(req, SessionRequestSchema, d.sessionReadMaxBytes, wire, SESSION_PATH.slice(1), d.log);
    for await (const r of d.session(device, requests, signal)) {
      const wait = out.frame(sessionResponseFrame(r));
      if (wait) await wait;
    }
  });
}
