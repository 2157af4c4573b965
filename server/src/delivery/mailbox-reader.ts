/**
 * Reads one device's mailbox forward from a cursor, for one read pass of a stream. The first
 * messages come by single direct gets, one read ahead of the writer (most reconnects find none
 * or one or two); a longer backlog, or one spread among other devices' mail, comes in batches
 * of up to the stream's free window, a few requests per batch instead of one per message
 * (nats/batch-reads.ts).
 */
import type { StreamMsg } from "../nats/stream-reads.js";
import type { MailboxLocation, Mailboxes } from "./mailbox.js";

/**
 * Single gets before switching to batches. A batch (consumer create, one pull, delete) costs
 * nats-server about as much as six gets plus half a get per message: on this box batches
 * passed single gets at about a dozen messages (bench/src/catchup-probe.ts).
 */
const SINGLE_READS = 12;
/**
 * Two of the device's messages this far apart in the stream mean its mail is spread among
 * other devices' (mail for an offline device, arriving over hours): every further get then
 * crawls through as many other messages, and costs both sides a round trip each. A batch
 * reads the rest in one pass of three requests.
 */
export const SPREAD_GAP = 256;

export class MailboxReader {
  private buffered: StreamMsg[] = [];
  private ahead: Promise<StreamMsg | null> | undefined;
  private singles = 0;
  /** The last batch found nothing after its last message. */
  private exhausted = false;
  /** Sequence of the last message returned (0: none yet) and whether the mail looked spread. */
  private last = 0;
  private spread = false;

  constructor(
    private readonly mailboxes: Mailboxes,
    private readonly loc: MailboxLocation,
    private cursor: number,
  ) {}

  /** The next stored message after the last one returned, or null. `room`: how many the caller can take now. */
  async next(room: number): Promise<StreamMsg | null> {
    const buffered = this.buffered.shift();
    if (buffered) return this.took(buffered);
    if (this.exhausted) return null;
    if (this.ahead || !this.batching()) {
      const read = this.ahead ?? this.mailboxes.next(this.loc, this.cursor);
      this.ahead = undefined;
      this.singles++;
      const m = await read;
      return m ? this.took(m) : null;
    }
    const batch = await this.mailboxes.batch(this.loc, this.cursor, Math.max(1, room));
    this.exhausted = batch.more === 0;
    this.buffered = batch.msgs;
    const first = this.buffered.shift();
    return first ? this.took(first) : null;
  }

  /** Starts the next single get while the caller writes the current message. */
  prefetch(): void {
    if (this.ahead || this.buffered.length || this.exhausted || this.batching()) return;
    this.ahead = this.mailboxes.next(this.loc, this.cursor);
    this.ahead.catch(() => {}); // Observed by next(), or dropped with the reader.
  }

  /** Acked meanwhile (by another stream of the device): not to be handed out from the buffer. */
  forget(sequences: Iterable<number>): void {
    if (!this.buffered.length) return;
    const gone = new Set(sequences);
    this.buffered = this.buffered.filter((m) => !gone.has(m.seq));
  }

  private batching(): boolean {
    return this.mailboxes.batches && (this.singles >= SINGLE_READS || this.spread);
  }

  private took(m: StreamMsg): StreamMsg {
    if (this.last && m.seq - this.last > SPREAD_GAP) this.spread = true;
    this.cursor = this.last = m.seq;
    return m;
  }
}
