/**
 * Many messages of one subject per round trip, on nats-server 2.9 (which has no batched
 * direct get): a short-lived pull consumer filtered to the subject, starting after a cursor;
 * one MSG.NEXT with `batch: n, no_wait` brings up to n messages at once; the consumer is
 * deleted right after (and expires by itself after INACTIVE_NS if that delete is lost).
 * Three requests instead of one direct get per message (bench/ANALYSIS.md, catch-up).
 *
 * Nothing is acknowledged: the consumer only reads. Messages arrive with their own subject
 * and an ack reply `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
 * <time>.<pending>`, routed here by the consumer name; a status (404 none, 408 fewer than
 * asked) arrives on the request's own inbox. A gap in the consumer sequence (a message the
 * connection dropped) ends the batch before the gap: what is returned is always a complete
 * prefix of the subject's messages after the cursor.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { named, READ_TIMEOUT_MS, type JetStreamPublisher } from "./publisher.js";
import type { StreamMsg } from "./stream-reads.js";

/** A consumer whose delete was lost goes away by itself after this (ns). */
const INACTIVE_NS = 10e9;
/** Longer than any batch takes: nothing is redelivered while the consumer lives (ns). */
const ACK_WAIT_NS = 60e9;

export interface Batch {
  /** Ascending, contiguous (no message of the subject skipped between them). */
  msgs: StreamMsg[];
  /** Messages of the subject after the last one returned, when the batch was read (0: caught up). */
  more: number;
}

interface Open {
  msgs: StreamMsg[];
  expected: number;
  more: number;
  /** A status came (404/408): the server said this is all there is. */
  answered: boolean;
  done(): void;
}

export class BatchReads {
  private readonly prefix: string;
  private readonly tag: string;
  private readonly sub: Subscription;
  private readonly open = new Map<string, Open>();
  private next = 1;

  constructor(
    nc: NatsConnection,
    private readonly publisher: JetStreamPublisher,
    private readonly timeoutMs = READ_TIMEOUT_MS,
  ) {
    this.prefix = `${createInbox()}.`;
    // Consumer names are per instance (the inbox's random part) and per batch.
    this.tag = this.prefix.slice("_INBOX.".length, -1).slice(-12);
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (err, msg) => (err ? undefined : this.onMsg(msg)) });
  }

  /** Up to `max` messages of `subject` in `stream` with sequences above `after`. */
  async read(stream: string, subject: string, after: number, max: number): Promise<Batch> {
    const name = `spb_${this.tag}_${this.next++}`;
    const created = await this.publisher.api<{ num_pending?: number }>(`$JS.API.CONSUMER.CREATE.${stream}.${name}.${subject}`, {
      stream_name: stream,
      config: {
        name,
        filter_subject: subject,
        deliver_policy: "by_start_sequence",
        opt_start_seq: after + 1,
        ack_policy: "explicit",
        ack_wait: ACK_WAIT_NS,
        inactive_threshold: INACTIVE_NS,
        mem_storage: true,
        num_replicas: 1,
      },
    });
    const pending = created.num_pending ?? 0;
    if (pending === 0) {
      this.remove(stream, name);
      return { msgs: [], more: 0 };
    }
    const expected = Math.min(pending, max);
    let timer: NodeJS.Timeout | undefined;
    const batch = await new Promise<Open>((resolve) => {
      const b: Open = { msgs: [], expected, more: pending, answered: false, done: () => resolve(b) };
      this.open.set(name, b);
      timer = setTimeout(b.done, this.timeoutMs);
      this.publisher.publishCore(
        `$JS.API.CONSUMER.MSG.NEXT.${stream}.${name}`,
        new TextEncoder().encode(JSON.stringify({ batch: expected, no_wait: true })),
        `${this.prefix}${name}`,
      );
    });
    clearTimeout(timer);
    this.open.delete(name);
    this.remove(stream, name);
    if (!batch.msgs.length && batch.more > 0 && !batch.answered) throw named("TimeoutError", "no batch from JetStream in time");
    return { msgs: batch.msgs, more: batch.msgs.length ? batch.more : 0 };
  }

  private onMsg(msg: Msg): void {
    if (!msg.reply) {
      // A status on the request's inbox: 404 (nothing) or 408 (fewer than asked): the batch is what came.
      const b = this.open.get(msg.subject.slice(this.prefix.length));
      if (b) {
        b.answered = true;
        if (!b.msgs.length) b.more = 0;
        b.done();
      }
      return;
    }
    // $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
    const t = msg.reply.split(".");
    const b = t.length >= 9 ? this.open.get(t[3]) : undefined;
    if (!b) return; // a batch that already ended (timeout): dropped, read again later
    const seq = Number(t[5]);
    const consumerSeq = Number(t[6]);
    if (consumerSeq !== b.msgs.length + 1) {
      b.done(); // a gap: keep the complete prefix
      return;
    }
    b.msgs.push({ seq, subject: msg.subject, data: msg.data });
    b.more = Number(t[8]);
    if (b.msgs.length >= b.expected) b.done();
  }

  /** Fire and forget (the answer comes to an inbox nobody waits on); INACTIVE_NS is the backstop. */
  private remove(stream: string, name: string): void {
    this.publisher.publishCore(`$JS.API.CONSUMER.DELETE.${stream}.${name}`, undefined, `${this.prefix}deleted`);
  }

  close(): void {
    for (const b of this.open.values()) b.done();
    try {
      this.sub.unsubscribe();
    } catch {
      // Connection already closed.
    }
  }
}
