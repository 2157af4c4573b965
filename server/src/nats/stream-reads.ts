/**
 * Reads that see what the stream leader acknowledged.
 *
 * A direct get may be answered by any replica of a stream. On nats-server 2.9 a replica
 * gives no read-after-write (it may lag behind a PubAck or a delete), and the reliability
 * suite saw replicas answer with other messages at the same sequences after node crashes.
 * PubAck sequences and deletes are the leader's, so on a replicated stream every read goes
 * to the leader (STREAM.MSG.GET); a single-replica stream keeps the cheaper direct get (its
 * only replica is the leader).
 */
import type { DirectMsgRequest, JetStreamManager, MsgRequest } from "@nats-io/jetstream";
import type { JetStreamPublisher } from "./publisher.js";
import { Bucket, type KV } from "@nats-io/kv";

/** by sequence, last by subject, or the first at or after `seq` on a subject. */
export type StreamQuery = { seq: number } | { last_by_subj: string } | { seq: number; next_by_subj: string };

/** What readers use of a stored message. */
export interface StreamMsg {
  seq: number;
  subject: string;
  data: Uint8Array;
  /** The stored message's headers (e.g. KV-Operation), where the read returned them. */
  header?: { get(key: string): string };
}

export class StreamReads {
  constructor(
    private readonly jsm: JetStreamManager,
    readonly replicated: boolean,
    /** Direct gets as coalesced core requests (publisher.ts) instead of the client's request per get. */
    private readonly publisher?: JetStreamPublisher,
  ) {}

  /** The message, or null when there is none (deleted, expired, nothing after `seq`). */
  get(stream: string, query: StreamQuery): Promise<StreamMsg | null> {
    if (!this.replicated) return this.publisher ? this.publisher.directGet(stream, query) : this.jsm.direct.getMessage(stream, query as DirectMsgRequest);
    // The leader's STREAM.MSG.GET takes next_by_subj since nats-server 2.9; the client's type omits it.
    return this.jsm.streams.getMessage(stream, query as unknown as MsgRequest);
  }
}

/** Makes a KV bucket's gets leader reads when it is replicated (the client picks direct gets otherwise). */
export function leaderReadsFor(kv: KV, replicated: boolean): KV {
  if (!replicated) return kv;
  // The switch is the client's own Bucket.direct; anything else would silently keep direct gets.
  if (!(kv instanceof Bucket)) throw new Error("leaderReadsFor: not a @nats-io/kv Bucket");
  kv.direct = false;
  return kv;
}
