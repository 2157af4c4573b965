/**
 * DeliveryService.Session: sends, acks and the caller's mailbox on one bidirectional stream.
 * The token is checked once, when the stream opens; after that a send costs its own work
 * only (no per-call HTTP/2 stream, headers, auth or handler pipeline), and many sends are in
 * flight at once. Results come back in completion order, matched by the client's ids.
 *
 * Three producers feed one output queue: send results, ack results and the mailbox (a
 * ReceiveStream, exactly as Receive runs it). The queue is bounded for the mailbox (it waits
 * while the client is slow to read) and sends are bounded by a window of `maxInFlight`
 * pending requests (the reader stops pulling requests, so HTTP/2 flow control pushes back).
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  SessionErrorSchema,
  type ReceiveRequest,
  type ReceiveResponse,
  type SessionAckResult,
  type SessionError,
  type SessionRequest,
  type SessionSendResult,
  type SessionResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { AckResponse, SendResponse, SendRequest, AckRequest } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { atTokenExpiry, type AuthenticatedDevice } from "../auth/authenticator.js";
import { isTransientStoreError } from "../nats/store-errors.js";
import { RETRY_AFTER_HEADER } from "./send.js";
import { CallStop, type StopSignal } from "./call-stop.js";
import type { Metrics } from "../observability/metrics.js";

export interface SessionDeps {
  send(device: AuthenticatedDevice, req: SendRequest): Promise<SendResponse>;
  ack(device: AuthenticatedDevice, req: AckRequest): Promise<AckResponse>;
  /** The mailbox as Receive serves it (validates the request, throws ConnectError). */
  receive(device: AuthenticatedDevice, req: ReceiveRequest, signal: StopSignal): AsyncGenerator<ReceiveResponse>;
  /** Sends and acks processed at once per stream. */
  maxInFlight: number;
  now: () => number;
  metrics?: Metrics;
}

/** Mailbox events queued for a slow reader before the mailbox waits. */
const MAILBOX_QUEUE = 64;

export async function* runSession(
  d: SessionDeps,
  device: AuthenticatedDevice,
  requests: AsyncIterable<SessionRequest>,
  callSignal: StopSignal,
): AsyncGenerator<SessionResponse> {
  // Ends with the call, or earlier when the session fails.
  const signal = new CallStop();
  const stopWithCall = () => signal.abort();
  callSignal.addEventListener("abort", stopWithCall, { once: true });
  if (callSignal.aborted) signal.abort();
  d.metrics?.sessions(1);
  const out: SessionResponse[] = [];
  let failure: ConnectError | undefined;
  let finished = false;
  let wakeReader: (() => void) | undefined;
  let wakeWriter: (() => void) | undefined;
  let wakeMailbox: (() => void) | undefined;
  const notify = () => {
    const w = wakeWriter;
    wakeWriter = undefined;
    w?.();
  };
  const push = (r: SessionResponse) => {
    out.push(r);
    notify();
  };
  const fail = (err: ConnectError) => {
    failure ??= err;
    signal.abort();
    notify();
  };

  // The token's lifetime bounds the stream's: authenticate again and open a new one.
  const expired = () => new ConnectError("token expired; authenticate again and open a new session", Code.Unauthenticated);
  const cancelExpiry = atTokenExpiry(device, d.now, () => fail(expired()));

  let pending = 0;
  // Takes an in-flight slot: at once while one is free (no promise, no turn: every request
  // passes here), else once one frees.
  const slot = (): Promise<void> | undefined => {
    if (pending < d.maxInFlight || signal.aborted) {
      pending++;
      return undefined;
    }
    return (async () => {
      while (pending >= d.maxInFlight && !signal.aborted) await new Promise<void>((r) => (wakeReader = r));
      pending++;
    })();
  };
  const release = () => {
    pending--;
    const w = wakeReader;
    wakeReader = undefined;
    w?.();
    notify();
  };

  let mailboxOpen = false;
  const pumpMailbox = async (req: ReceiveRequest) => {
    try {
      // No expiry timer of the mailbox's own: the session's ends both (one timer, one message).
      for await (const ev of d.receive({ ...device, expiresAtMs: undefined }, req, signal)) {
        push({ $typeName: "sealpost.delivery.v1.SessionResponse", kind: { case: "mailbox", value: ev } });
        if (ev.event.case === "replaced") {
          finished = true;
          notify();
          return;
        }
        while (out.length >= MAILBOX_QUEUE && !signal.aborted) await new Promise<void>((r) => (wakeMailbox = r));
      }
    } catch (err) {
      if (!signal.aborted) fail(ConnectError.from(err));
    }
  };

  const reader = (async () => {
    try {
      for await (const r of requests) {
        if (signal.aborted) return;
        switch (r.kind.case) {
          case "send": {
            const { id, request } = r.kind.value;
            if (!request) {
              push(sendError(id, new ConnectError("send.request is required", Code.InvalidArgument)));
              break;
            }
            const waited = slot();
            if (waited) await waited;
            d.send(device, request)
              .then(
                (response) => push(sendResult(id, { case: "response", value: response })),
                (err) => {
                  const e = asConnectError(err);
                  // A revoked device's session ends, as its other calls do.
                  if (e.code === Code.Unauthenticated) fail(e);
                  else push(sendError(id, e));
                },
              )
              .finally(release);
            break;
          }
          case "ack": {
            const { id, request } = r.kind.value;
            if (!request) {
              push(ackError(id, new ConnectError("ack.request is required", Code.InvalidArgument)));
              break;
            }
            const waited = slot();
            if (waited) await waited;
            d.ack(device, request)
              .then(
                (response) => push(ackResult(id, { case: "response", value: response })),
                (err) => push(ackError(id, asConnectError(err))),
              )
              .finally(release);
            break;
          }
          case "receive":
            if (mailboxOpen) {
              fail(new ConnectError("the mailbox is already open on this session (one receive per stream)", Code.InvalidArgument));
              return;
            }
            mailboxOpen = true;
            void pumpMailbox(r.kind.value);
            break;
          default:
            fail(new ConnectError("session request has no kind (send, ack or receive)", Code.InvalidArgument));
            return;
        }
      }
      // Half-closed: answer what is pending, then end.
      while (pending > 0 && !signal.aborted) await new Promise<void>((r) => (wakeReader = r));
      finished = true;
      notify();
    } catch (err) {
      if (!signal.aborted) fail(asConnectError(err));
    }
  })();

  try {
    for (;;) {
      while (out.length) {
        yield out.shift()!;
        if (wakeMailbox && out.length < MAILBOX_QUEUE / 2) {
          const w = wakeMailbox;
          wakeMailbox = undefined;
          w();
        }
      }
      if (failure) throw failure;
      if (finished || callSignal.aborted) return;
      await new Promise<void>((r) => (wakeWriter = r));
    }
  } finally {
    d.metrics?.sessions(-1);
    cancelExpiry();
    callSignal.removeEventListener("abort", stopWithCall);
    signal.abort();
    wakeMailbox?.();
    const w = wakeReader;
    wakeReader = undefined;
    w?.();
    // Not awaited: the reader may be parked on the client's next request, which ends with the call.
    reader.catch(() => {});
  }
}

function asConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (isTransientStoreError(err)) return new ConnectError("message store unavailable; retry", Code.Unavailable);
  return new ConnectError("internal error; retry later", Code.Internal);
}

function toSessionError(e: ConnectError): SessionError {
  const retry = Number(e.metadata.get(RETRY_AFTER_HEADER) ?? 0);
  return create(SessionErrorSchema, { code: codeName(e.code), message: e.rawMessage, retryAfterMs: Number.isFinite(retry) ? retry : 0 });
}

// One of these per message in each direction: plain protobuf-es objects, not create() (see send.ts, storedOutcome).
function sendResult(id: bigint, result: SessionSendResult["result"]): SessionResponse {
  return {
    $typeName: "sealpost.delivery.v1.SessionResponse",
    kind: { case: "sendResult", value: { $typeName: "sealpost.delivery.v1.SessionSendResult", id, result } },
  };
}

function ackResult(id: bigint, result: SessionAckResult["result"]): SessionResponse {
  return {
    $typeName: "sealpost.delivery.v1.SessionResponse",
    kind: { case: "ackResult", value: { $typeName: "sealpost.delivery.v1.SessionAckResult", id, result } },
  };
}

const sendError = (id: bigint, e: ConnectError) => sendResult(id, { case: "error", value: toSessionError(e) });
const ackError = (id: bigint, e: ConnectError) => ackResult(id, { case: "error", value: toSessionError(e) });

/** Code.ResourceExhausted -> "RESOURCE_EXHAUSTED" (the gRPC status name). */
export function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
