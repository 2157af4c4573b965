/**
 * Send and Ack for this device: pipelined over one DeliveryService.Session stream where the
 * transport carries bidirectional streams (HTTP/2: the default Connect transport, gRPC),
 * unary Send and Ack elsewhere (gRPC-Web, HTTP/1.1, a server without Session).
 *
 * The session is opened on first use and re-opened after it ends; calls in flight when it
 * ends fail with the stream's error (UNAVAILABLE when it just went away), which the outbox
 * and the receive loop already retry (a retried Send is marked `retry`). A call not answered
 * within the deadline fails with DEADLINE_EXCEEDED and ends the session (a stream that
 * stopped answering is not trusted with the retry). A server that answers UNIMPLEMENTED is
 * remembered: from then on this channel uses the unary calls.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  SessionRequestSchema,
  type AckResponse,
  type DeliveryService,
  type SessionError,
  type SessionRequest,
  type SessionResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SendRequestSchema, AckRequestSchema, SendResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { Pushable } from "../util/pushable.js";
import { RETRY_AFTER_HEADER } from "./failure-kinds.js";
import { CALL_DEADLINE_MS, deadlineExceeded } from "./call-deadline.js";

type SendInit = MessageInitShape<typeof SendRequestSchema>;
type AckInit = MessageInitShape<typeof AckRequestSchema>;

interface Pending {
  resolve(v: SendResponse | AckResponse): void;
  reject(e: ConnectError): void;
}

export class DeliveryChannel {
  private session: OpenSession | undefined;
  private unsupported: boolean;

  constructor(
    private readonly delivery: Client<typeof DeliveryService>,
    /** Whether the transport carries bidirectional streams (HTTP/2). */
    useSession: boolean,
    private readonly deadlineMs = CALL_DEADLINE_MS,
  ) {
    this.unsupported = !useSession;
  }

  /** True while sends go over a Session stream (for status displays and tests). */
  get usingSession(): boolean {
    return !this.unsupported;
  }

  async send(req: SendInit): Promise<SendResponse> {
    if (this.unsupported) return this.delivery.send(req);
    try {
      return (await this.open().call((id) => ({ kind: { case: "send", value: { id, request: req } } }))) as SendResponse;
    } catch (err) {
      if (this.fallBack(err)) return this.delivery.send(req);
      throw err;
    }
  }

  async ack(req: AckInit): Promise<AckResponse> {
    if (this.unsupported) return this.delivery.ack(req);
    try {
      return (await this.open().call((id) => ({ kind: { case: "ack", value: { id, request: req } } }))) as AckResponse;
    } catch (err) {
      if (this.fallBack(err)) return this.delivery.ack(req);
      throw err;
    }
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }

  private open(): OpenSession {
    if (!this.session || this.session.ended) this.session = new OpenSession(this.delivery, this.deadlineMs);
    return this.session;
  }

  /** A server without Session (or a proxy that cannot carry it): use the unary calls from now on. */
  private fallBack(err: unknown): boolean {
    if (err instanceof ConnectError && err.code === Code.Unimplemented && !(err as { fromResult?: boolean }).fromResult) {
      this.unsupported = true;
      return true;
    }
    return false;
  }
}

class OpenSession {
  ended = false;
  private readonly requests = new Pushable<SessionRequest>();
  private readonly pending = new Map<bigint, Pending>();
  private nextId = 1n;
  private readonly abort = new AbortController();

  constructor(
    delivery: Client<typeof DeliveryService>,
    private readonly deadlineMs: number,
  ) {
    void (async () => {
      let failure: ConnectError;
      try {
        for await (const r of delivery.session(this.requests, { signal: this.abort.signal })) this.onResponse(r);
        failure = new ConnectError("session ended; retry", Code.Unavailable);
      } catch (err) {
        failure = ConnectError.from(err);
      }
      this.ended = true;
      this.requests.end();
      for (const p of this.pending.values()) p.reject(failure);
      this.pending.clear();
    })();
  }

  call(make: (id: bigint) => Parameters<typeof create<typeof SessionRequestSchema>>[1]): Promise<SendResponse | AckResponse> {
    if (this.ended) return Promise.reject(new ConnectError("session ended; retry", Code.Unavailable));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        reject(deadlineExceeded(this.deadlineMs));
        this.close();
      }, this.deadlineMs);
      const settled = () => clearTimeout(timer);
      this.pending.set(id, {
        resolve: (v) => (settled(), resolve(v)),
        reject: (e) => (settled(), reject(e)),
      });
      this.requests.push(create(SessionRequestSchema, make(id)));
    });
  }

  close(): void {
    this.ended = true;
    this.requests.end();
    this.abort.abort();
  }

  private onResponse(r: SessionResponse): void {
    if (r.kind.case !== "sendResult" && r.kind.case !== "ackResult") return;
    const { id, result } = r.kind.value;
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (result.case === "response") p.resolve(result.value);
    else if (result.case === "error") p.reject(errorOf(result.value));
    else p.reject(new ConnectError("session result without outcome", Code.Internal));
  }
}

/** The ConnectError the unary call would have thrown (same code, message, retry header). */
function errorOf(e: SessionError): ConnectError {
  const code =
    (Code as unknown as Record<string, Code>)[
      e.code
        .toLowerCase()
        .replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
        .replace(/^./, (c) => c.toUpperCase())
    ] ?? Code.Unknown;
  const err = new ConnectError(e.message, code, e.retryAfterMs ? { [RETRY_AFTER_HEADER]: String(e.retryAfterMs) } : undefined);
  // An UNIMPLEMENTED result is about the request, not a server without Session.
  (err as { fromResult?: boolean }).fromResult = true;
  return err;
}
