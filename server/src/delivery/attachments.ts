/**
 * Attachments: encrypted blobs uploaded in fixed-size chunks and downloaded as a stream.
 * Chunks live in SP_ATTACHMENTS (subject sp.att.<id>.<index>, one message per subject, so a
 * retried chunk replaces the earlier copy), metadata in the attachments bucket. Both expire
 * after the mailbox retention, like the messages that point at them.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { KV } from "@nats-io/kv";
import { createHash } from "node:crypto";
import {
  CompleteAttachmentResponseSchema,
  CreateAttachmentResponseSchema,
  DownloadAttachmentResponseSchema,
  PutAttachmentChunkResponseSchema,
  type CompleteAttachmentResponse,
  type CreateAttachmentRequest,
  type CreateAttachmentResponse,
  type DownloadAttachmentResponse,
  type PutAttachmentChunkRequest,
  type PutAttachmentChunkResponse,
} from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { AuthenticatedDevice } from "../auth/authenticator.js";
import type { StreamMsg, StreamReads } from "../nats/stream-reads.js";
import type { Nats } from "../nats/connection.js";
import type { Metrics } from "../observability/metrics.js";
import type { RateLimiter } from "../rate-limit.js";
import { ATTACHMENT_STREAM, attachmentChunkSubject } from "../nats/layout.js";
import type { DeliveryLimits } from "./limits.js";
import { storeOp } from "../nats/store-errors.js";
import { exhausted, hex, invalid } from "./validation.js";

const ID = /^[A-Za-z0-9_-]{24}$/;

interface AttachmentMeta {
  size: number;
  sha256: string;
  chunkBytes: number;
  chunkCount: number;
  /** "account/device" of the uploader: only it may put chunks and complete. */
  owner: string;
  expiresAtMs: number;
  completed: boolean;
}

export interface AttachmentDeps {
  nats: Nats;
  /** Chunk reads (leader reads when the stream is replicated). */
  reads: StreamReads;
  meta: KV;
  limits: DeliveryLimits;
  /** CreateAttachment per device (limits.attachmentsPerMinute). */
  rate: RateLimiter;
  now: () => number;
  random: (n: number) => Uint8Array;
  metrics?: Metrics;
}

export class Attachments {
  constructor(private readonly d: AttachmentDeps) {}

  async create(who: AuthenticatedDevice, req: CreateAttachmentRequest): Promise<CreateAttachmentResponse> {
    const l = this.d.limits;
    if (req.size < 1n) throw invalid("size must be at least 1 byte");
    if (req.size > BigInt(l.maxAttachmentBytes)) throw exhausted(`size ${req.size} exceeds max_attachment_bytes ${l.maxAttachmentBytes}`);
    if (req.sha256.length !== 32) throw invalid(`sha256 must be 32 bytes, got ${req.sha256.length}`);
    const key = `${who.accountId}/${who.deviceId}`;
    if (!this.d.rate.take(key)) {
      this.d.metrics?.rejected("attachments_per_minute");
      throw exhausted(
        `attachment rate limit exceeded: ${l.attachmentsPerMinute} CreateAttachment per minute per device; retry in ${this.d.rate.retryAfterSeconds(key)} s`,
      );
    }
    const size = Number(req.size);
    const id = Buffer.from(this.d.random(18)).toString("base64url");
    const meta: AttachmentMeta = {
      size,
      sha256: hex(req.sha256),
      chunkBytes: l.attachmentChunkBytes,
      chunkCount: Math.ceil(size / l.attachmentChunkBytes),
      owner: `${who.accountId}/${who.deviceId}`,
      expiresAtMs: this.d.now() + l.mailboxRetentionMs,
      completed: false,
    };
    await storeOp("reserving the attachment", () => this.d.meta.create(id, encode(meta)));
    return create(CreateAttachmentResponseSchema, {
      attachmentId: id,
      chunkBytes: meta.chunkBytes,
      chunkCount: meta.chunkCount,
      expiresAtMs: BigInt(meta.expiresAtMs),
    });
  }

  async putChunk(who: AuthenticatedDevice, req: PutAttachmentChunkRequest): Promise<PutAttachmentChunkResponse> {
    const { meta } = await this.load(req.attachmentId);
    this.checkOwner(who, meta, "put chunks of");
    if (meta.completed) throw new ConnectError(`attachment ${req.attachmentId} is complete; its chunks can no longer change`, Code.FailedPrecondition);
    if (req.index >= meta.chunkCount) throw invalid(`index ${req.index} is out of range: the attachment has chunks 0 to ${meta.chunkCount - 1}`);
    const want = chunkLength(meta, req.index);
    if (req.data.length !== want) throw invalid(`chunk ${req.index} must be ${want} bytes, got ${req.data.length}`);
    await storeOp("storing the chunk", () =>
      this.d.nats.js.publish(attachmentChunkSubject(req.attachmentId, req.index), req.data, { expect: { streamName: ATTACHMENT_STREAM } }),
    );
    return create(PutAttachmentChunkResponseSchema);
  }

  async complete(who: AuthenticatedDevice, attachmentId: string): Promise<CompleteAttachmentResponse> {
    const { meta, revision } = await this.load(attachmentId);
    this.checkOwner(who, meta, "complete");
    if (meta.completed) return create(CompleteAttachmentResponseSchema, { size: BigInt(meta.size) });
    const hash = createHash("sha256");
    for (let i = 0; i < meta.chunkCount; i++) {
      const m = await storeOp("reading a chunk", () => this.chunk(attachmentId, i));
      if (!m) throw new ConnectError(`chunk ${i} of attachment ${attachmentId} is missing; put it and complete again`, Code.FailedPrecondition);
      if (m.data.length !== chunkLength(meta, i)) throw new ConnectError(`chunk ${i} has the wrong size; put it again`, Code.FailedPrecondition);
      hash.update(m.data);
    }
    if (hash.digest("hex") !== meta.sha256) {
      throw new ConnectError(
        "the SHA-256 of the uploaded chunks does not match the sha256 given at CreateAttachment; put the right chunks and complete again",
        Code.FailedPrecondition,
      );
    }
    try {
      await this.d.meta.update(attachmentId, encode({ ...meta, completed: true }), revision);
    } catch (err) {
      // A concurrent Complete won the CAS: fine if it completed the same upload.
      const again = await this.load(attachmentId);
      if (!again.meta.completed) throw new ConnectError("attachment changed concurrently; complete again", Code.Aborted, undefined, undefined, err);
    }
    return create(CompleteAttachmentResponseSchema, { size: BigInt(meta.size) });
  }

  /** Chunks in order from start_chunk; reads one chunk ahead, sends as fast as the client takes them. */
  async *download(attachmentId: string, startChunk: number): AsyncGenerator<DownloadAttachmentResponse> {
    const { meta } = await this.load(attachmentId);
    if (!meta.completed) throw new ConnectError(`attachment ${attachmentId} is not complete yet`, Code.FailedPrecondition);
    if (startChunk >= meta.chunkCount) throw invalid(`start_chunk ${startChunk} is out of range: the attachment has chunks 0 to ${meta.chunkCount - 1}`);
    let next: Promise<StreamMsg | null> = this.chunk(attachmentId, startChunk);
    for (let i = startChunk; i < meta.chunkCount; i++) {
      const m = await storeOp("reading a chunk", () => next);
      if (i + 1 < meta.chunkCount) {
        next = this.chunk(attachmentId, i + 1);
        next.catch(() => {}); // Observed on the next turn; avoid an unhandled rejection if we stop early.
      }
      if (!m) throw new ConnectError(`chunk ${i} of attachment ${attachmentId} has expired`, Code.NotFound);
      yield create(DownloadAttachmentResponseSchema, { index: i, data: m.data, size: BigInt(meta.size) });
    }
  }

  private chunk(id: string, index: number): Promise<StreamMsg | null> {
    return this.d.reads.get(ATTACHMENT_STREAM, { last_by_subj: attachmentChunkSubject(id, index) });
  }

  private async load(id: string): Promise<{ meta: AttachmentMeta; revision: number }> {
    if (!ID.test(id)) throw invalid(`attachment_id ${JSON.stringify(id.slice(0, 40))} is malformed (24 URL-safe characters from CreateAttachment)`);
    const e = await storeOp("reading the attachment", () => this.d.meta.get(id));
    if (e?.operation !== "PUT") throw new ConnectError(`attachment ${id} not found (unknown or expired)`, Code.NotFound);
    const meta = JSON.parse(new TextDecoder().decode(e.value)) as AttachmentMeta;
    if (meta.expiresAtMs <= this.d.now()) throw new ConnectError(`attachment ${id} not found (unknown or expired)`, Code.NotFound);
    return { meta, revision: e.revision };
  }

  private checkOwner(who: AuthenticatedDevice, meta: AttachmentMeta, what: string): void {
    if (meta.owner !== `${who.accountId}/${who.deviceId}`) {
      throw new ConnectError(`only the uploading device can ${what} this attachment`, Code.PermissionDenied);
    }
  }
}

function chunkLength(meta: AttachmentMeta, index: number): number {
  return index < meta.chunkCount - 1 ? meta.chunkBytes : meta.size - meta.chunkBytes * (meta.chunkCount - 1);
}

function encode(meta: AttachmentMeta): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(meta));
}
