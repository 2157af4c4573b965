/**
 * Attachments, encrypted on the client: AES-256-GCM under a fresh random key,
 * ciphertext = nonce (12) || GCM(key, nonce, file, AD "sealpost.attachment.v1") || tag.
 * The ciphertext is uploaded in the server's chunk size (CreateAttachment,
 * PutAttachmentChunk for every index, CompleteAttachment); the key and the ciphertext's
 * SHA-256 travel inside the end-to-end encrypted message (AttachmentPointer). Downloads are
 * resumed from the next chunk after an interruption, and the digest is checked before
 * anything is decrypted.
 */
import { retry } from "../util/backoff.js";
import { create } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { AttachmentPointerSchema, type AttachmentPointer } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { concatBytes, constantTimeEqual, utf8 } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { AttachmentInfo } from "../store/conversation-store.js";
import { MessengerError } from "../core/messenger-errors.js";
import type { ServerApi } from "./server-api.js";

const AD = utf8("sealpost.attachment.v1");
const NONCE_BYTES = 12;
const ATTEMPTS = 3;

export interface AttachmentMeta {
  contentType: string;
  fileName?: string;
  caption?: string;
  width?: number;
  height?: number;
  /** Upload progress: encrypted bytes the server has of the total (after each chunk). */
  onProgress?: (sentBytes: number, totalBytes: number) => void;
}

/** A chunk call again, after a short backoff, when the server or the network failed it. */
function again<T>(fn: () => Promise<T>): Promise<T> {
  return retry(fn, { attempts: ATTEMPTS, retryable: (err) => err instanceof ConnectError, backoff: { baseMs: 100, maxMs: 1_000 } });
}

/** Encrypts and uploads `data`; returns what the message must carry. */
export async function uploadAttachment(api: ServerApi, provider: CryptoProvider, data: Uint8Array, meta: AttachmentMeta): Promise<AttachmentInfo> {
  const key = provider.random(32);
  const nonce = provider.random(NONCE_BYTES);
  const ciphertext = concatBytes(nonce, await provider.aesGcmSeal(key, nonce, data, AD));
  const digest = await provider.sha256Async(ciphertext);
  const res = await api.delivery.createAttachment({ size: BigInt(ciphertext.length), sha256: digest });
  for (let i = 0; i < res.chunkCount; i++) {
    const chunk = ciphertext.subarray(i * res.chunkBytes, Math.min(ciphertext.length, (i + 1) * res.chunkBytes));
    await again(() => api.delivery.putAttachmentChunk({ attachmentId: res.attachmentId, index: i, data: chunk }));
    meta.onProgress?.(i * res.chunkBytes + chunk.length, ciphertext.length);
  }
  await again(() => api.delivery.completeAttachment({ attachmentId: res.attachmentId }));
  return {
    attachmentId: res.attachmentId,
    key,
    digest,
    size: data.length,
    contentType: meta.contentType,
    fileName: meta.fileName ?? "",
    caption: meta.caption ?? "",
    width: meta.width ?? 0,
    height: meta.height ?? 0,
  };
}

/** The AttachmentPointer a message carries for an uploaded attachment (1:1 and group alike). */
export function attachmentPointer(info: AttachmentInfo): AttachmentPointer {
  return create(AttachmentPointerSchema, {
    attachmentId: info.attachmentId,
    key: info.key,
    ciphertextSha256: info.digest,
    size: BigInt(info.size),
    contentType: info.contentType,
    fileName: info.fileName,
    caption: info.caption,
    width: info.width,
    height: info.height,
  });
}

/** What is stored for a received AttachmentPointer (the inverse of attachmentPointer). */
export function attachmentInfoOf(a: AttachmentPointer): AttachmentInfo {
  return {
    attachmentId: a.attachmentId,
    key: a.key,
    digest: a.ciphertextSha256,
    size: Number(a.size),
    contentType: a.contentType,
    fileName: a.fileName,
    caption: a.caption,
    width: a.width,
    height: a.height,
  };
}

/** Downloads, verifies the digest, decrypts. Throws MessengerError("attachment_corrupt") on any mismatch. */
export async function downloadAttachment(api: ServerApi, provider: CryptoProvider, info: AttachmentInfo): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let attempts = 0;
  for (;;) {
    try {
      for await (const c of api.delivery.downloadAttachment({ attachmentId: info.attachmentId, startChunk: chunks.length })) {
        if (c.index !== chunks.length) throw new MessengerError("attachment_corrupt", `chunk ${c.index} arrived where ${chunks.length} was expected`);
        chunks.push(c.data);
      }
      break;
    } catch (err) {
      if (!(err instanceof ConnectError) || ++attempts >= ATTEMPTS) throw err;
    }
  }
  const ciphertext = concatBytes(...chunks);
  if (!constantTimeEqual(await provider.sha256Async(ciphertext), info.digest)) {
    throw new MessengerError("attachment_corrupt", `attachment ${info.attachmentId}: SHA-256 of the download does not match the message`);
  }
  if (ciphertext.length < NONCE_BYTES + 16) throw new MessengerError("attachment_corrupt", "attachment too short");
  const plain = await provider.aesGcmOpen(info.key, ciphertext.subarray(0, NONCE_BYTES), ciphertext.subarray(NONCE_BYTES), AD);
  if (!plain || plain.length !== info.size) throw new MessengerError("attachment_corrupt", `attachment ${info.attachmentId} does not decrypt`);
  return plain;
}
