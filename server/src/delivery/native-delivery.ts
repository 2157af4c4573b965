/**
 * The calls on every message's path, served on the native HTTP/2 stream: Receive and
 * Session (native-stream.ts), Send, SendSealed and Ack (native-unary.ts). A Receive stream mostly waits,
 * and through connect-node each one held ~50-60 KiB of per-call pipeline; a Session carries
 * thousands of messages a second, and connect-es's per-message async-iterable chain and
 * serialization were ~30% of the server's CPU; a unary Send paid ~0.3-0.5 ms of per-call
 * pipeline. They are served on the HTTP/2 stream itself, before Node's compat layer would
 * wrap it in a request and a response (one-port.ts). Everything these paths do not take goes
 * on to connect-node, which answers the same (the tests compare both paths).
 */
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
import { ConnectError } from "@connectrpc/connect";
import type { NativeStreamHandler } from "../one-port.js";
import type { AuthenticatedDevice } from "../auth/authenticator.js";
import { needsToken, refuseStream } from "../auth/pre-auth-gate.js";
import { corsHeaders } from "../cors.js";
import { decodeMessage, nativeWire, readBody, singleEnvelope, type NativeCall, type Wire } from "./native-wire.js";
import { RequestMessages, serveStream, type StreamCallDeps } from "./native-stream.js";
import { serveUnary, type UnaryMethod } from "./native-unary.js";
import { receiveResponseFrame, sessionResponseFrame } from "./session-encoding.js";
import type { StopSignal } from "./call-stop.js";

const path = (m: { name: string }) => `/${DeliveryService.typeName}/${m.name}`;
const RECEIVE_PATH = path(DeliveryService.method.receive);
const SESSION_PATH = path(DeliveryService.method.session);
const SEND_PATH = path(DeliveryService.method.send);
const SEND_SEALED_PATH = path(DeliveryService.method.sendSealed);
const ACK_PATH = path(DeliveryService.method.ack);

export interface NativeDeliveryDeps extends StreamCallDeps {
  /** The device of a bearer token's `authorization` header (signature and expiry), or UNAUTHENTICATED. */
  token(authorization: string | undefined): AuthenticatedDevice;
  /** The device of a checked token if it is still listed, or UNAUTHENTICATED (revoked). */
  listed(token: AuthenticatedDevice): Promise<AuthenticatedDevice>;
  /** The mailbox stream of the device (what the Receive RPC yields). */
  mailbox(device: AuthenticatedDevice, req: ReceiveRequest, signal: StopSignal): AsyncGenerator<ReceiveResponse>;
  /** The Session of the device over its request messages (what the Session RPC yields). */
  session(device: AuthenticatedDevice, requests: AsyncIterable<SessionRequest>, signal: StopSignal): AsyncGenerator<SessionResponse>;
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

interface Route {
  kind: "unary" | "stream";
  serve(call: NativeCall): void;
}

/** The native handler of the one port: takes these five calls in the binary codecs over HTTP/2. */
export function nativeDelivery(d: NativeDeliveryDeps): NativeStreamHandler {
  const send: UnaryMethod<typeof SendRequestSchema, typeof SendResponseSchema> = {
    procedure: "Send",
    method: SEND_PATH.slice(1),
    input: SendRequestSchema,
    output: SendResponseSchema,
    readMaxBytes: d.sendReadMaxBytes,
    handle: (req, call) => d.send(call.token!, req),
  };
  const ack: UnaryMethod<typeof AckRequestSchema, typeof AckResponseSchema> = {
    procedure: "Ack",
    method: ACK_PATH.slice(1),
    input: AckRequestSchema,
    output: AckResponseSchema,
    readMaxBytes: d.ackReadMaxBytes,
    handle: (req, call) => d.ack(call.token!, req),
  };
  const sendSealed: UnaryMethod<typeof SendSealedRequestSchema, typeof SendSealedResponseSchema> = {
    procedure: "SendSealed",
    method: SEND_SEALED_PATH.slice(1),
    input: SendSealedRequestSchema,
    output: SendSealedResponseSchema,
    readMaxBytes: d.sendReadMaxBytes,
    handle: (req, call) => d.sendSealed(req, call.stream.session?.socket?.remoteAddress ?? "unknown"),
  };
  const routes = new Map<string, Route>([
    [SEND_PATH, { kind: "unary", serve: (call) => serveUnary(send, call, d) }],
    [SEND_SEALED_PATH, { kind: "unary", serve: (call) => serveUnary(sendSealed, call, d) }],
    [ACK_PATH, { kind: "unary", serve: (call) => serveUnary(ack, call, d) }],
    [RECEIVE_PATH, { kind: "stream", serve: (call) => serveReceive(call, d) }],
    [SESSION_PATH, { kind: "stream", serve: (call) => serveSession(call, d) }],
  ]);
  return (stream, headers) => {
    const path = String(headers[":path"]);
    const route = routes.get(path);
    const wire = route && nativeWire(headers, route.kind);
    if (!route || !wire) return false;
    const call: NativeCall = {
      stream,
      headers,
      wire,
      contentType: String(headers["content-type"]).split(";")[0],
      extra: corsHeaders(headers.origin),
    };
    // The pre-auth gate's rule (everything but SendSealed), checked before the body is read.
    if (needsToken(path)) {
      const authorization = headers.authorization;
      try {
        call.token = d.token(typeof authorization === "string" ? authorization : undefined);
      } catch (err) {
        // No work before authentication: answered from the headers, the body dropped unread.
        try {
          refuseStream(stream, call.contentType, call.extra, err instanceof ConnectError ? err.rawMessage : "invalid authorization");
        } catch {
          stream.destroy(); // reset meanwhile: nobody to answer (and no throw out of the stream event)
        }
        return true;
      }
    }
    route.serve(call);
    return true;
  };
}

// The producers below take what they need from the call, not the call: it holds the request
// headers, which a stream open for hours does not need after its first moment.

function serveReceive(call: NativeCall, d: NativeDeliveryDeps): void {
  const { stream, wire, token } = call;
  serveStream("Receive", call, d, async (out, signal) => {
    const request = receiveRequest(await readBody(stream, d.receiveReadMaxBytes), wire, d);
    const device = await d.listed(token!);
    for await (const ev of d.mailbox(device, request, signal)) {
      const wait = out.frame(receiveResponseFrame(ev));
      if (wait) await wait;
    }
  });
}

/** Decoded in a function of its own: the producer, alive as long as the stream, keeps no reference to the body. */
function receiveRequest(body: Buffer, wire: Wire, d: NativeDeliveryDeps): ReceiveRequest {
  const { flags, payload } = singleEnvelope(body, "server-streaming");
  return decodeMessage(ReceiveRequestSchema, flags, payload, wire, RECEIVE_PATH.slice(1), d.log);
}

function serveSession(call: NativeCall, d: NativeDeliveryDeps): void {
  const { stream, wire, token } = call;
  serveStream("Session", call, d, async (out, signal) => {
    const device = await d.listed(token!);
    const requests = new RequestMessages(stream, SessionRequestSchema, d.sessionReadMaxBytes, wire, SESSION_PATH.slice(1), d.log);
    for await (const r of d.session(device, requests, signal)) {
      const wait = out.frame(sessionResponseFrame(r));
      if (wait) await wait;
    }
  });
}
