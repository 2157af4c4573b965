/**
 * Ack: delete acknowledged mail by sequence, only from the caller's own mailbox. A sequence
 * that is not the caller's is ignored exactly like one already acked (no oracle); a malformed
 * request deletes nothing. When the acked sequences complete a prefix of the mailbox this
 * instance's stream delivered, one purge deletes them all (ReceiveStream.purgePlan says when
 * that is exact).
 * Ownership is proven by this instance's own stream (the sequence is in flight to this
 * device here) or by reading the message's subject (one get).
 *
 * One device's Acks run one batch at a time on this instance; Acks that arrive meanwhile
 * wait and then go together as one batch. Run side by side, an Ack would see the sequences
 * of another still in flight below its own and could not purge (under load most Acks went
 * as one delete per sequence), and a merged batch is one purge where separate ones are several.
 */
import type { AckResponse } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { AuthenticatedDevice } from "../auth/authenticator.js";
import type { DeliveryLimits } from "./limits.js";
import type { Mailboxes } from "./mailbox.js";
import type { ReceiveHub } from "./receive-hub.js";
import type { ReceiveStream } from "./receive-stream.js";
import type { Metrics } from "../observability/metrics.js";
import { storeOp } from "../nats/store-errors.js";
import { invalid } from "./validation.js";

/** A count check plus a purge is two requests: worth it from this many sequences on. */
const COUNT_CHECK_MIN_BATCH = 3;

/**
 * nats-server (2.9.10) answers the count check by passing over every subject of the
 * partition's stream: measured ~300 us plus ~0.12 us a subject of nats-server CPU, against
 * ~50-75 us a delete (bench/ANALYSIS.md). So with many devices' mail in one stream the count
 * alone costs more than the deletes of a typical batch: it is asked for only when the batch
 * has COUNT_CHECK_MIN_BATCH sequences plus one per this many subjects the stream held at its
 * last count (Mailboxes.knownSubjects; unknown: the count is asked for, and tells).
 */
export const SUBJECTS_PER_DELETE = 400;

/**
 * A purge of one device's subject costs nats-server (2.9.10) work that grows with the stretch
 * of stream it passes: cheap when the acked mail lies close together (live mail, a backlog
 * that arrived in a burst), up to ~10x the cost of deleting each message when a catch-up's
 * backlog lies spread over a large stream (bench/ANALYSIS.md). A batch whose sequences span
 * more than this goes as deletes.
 */
export const PURGE_MAX_SPAN = 4096;

/**
 * One device's Acks on this instance: a batch running, and the batches of the Acks waiting
 * for it (each at most max_ack_sequences, as one Ack could be).
 */
interface Lane {
  waiting: NextBatch[];
}

interface NextBatch {
  seqs: Set<number>;
  done: Promise<Set<number>>;
  resolve(deleted: Set<number>): void;
  reject(err: unknown): void;
}

function nextBatch(): NextBatch {
  const b = { seqs: new Set<number>() } as NextBatch;
  b.done = new Promise<Set<number>>((resolve, reject) => {
    b.resolve = resolve;
    b.reject = reject;
  });
  return b;
}

export class Acker {
  private readonly lanes = new Map<string, Lane>();

  constructor(
    private readonly mailboxes: Mailboxes,
    private readonly hub: ReceiveHub,
    private readonly limits: DeliveryLimits,
    private readonly metrics?: Metrics,
    private readonly purgeMaxSpan = PURGE_MAX_SPAN,
    private readonly subjectsPerDelete = SUBJECTS_PER_DELETE,
  ) {}

  async ack(device: AuthenticatedDevice, sequences: bigint[]): Promise<AckResponse> {
    if (sequences.length === 0) throw invalid("sequences must not be empty");
    if (sequences.length > this.limits.maxAckSequences) {
      throw invalid(`at most ${this.limits.maxAckSequences} sequences per Ack, got ${sequences.length}`);
    }
    const seqs = new Set<number>();
    sequences.forEach((q, i) => {
      if (q < 1n || q > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`sequences[${i}] is ${q}; mailbox sequences are 1 to 2^53-1`);
      seqs.add(Number(q));
    });
    const deleted = await this.inLane(device, seqs);
    // Each deleted sequence counts for the first Ack of the batch that named it.
    let mine = 0;
    for (const q of seqs) if (deleted.delete(q)) mine++;
    return { $typeName: "sealpost.delivery.v1.AckResponse", deleted: mine };
  }

  /** Runs `seqs` in the device's lane: now if it is free, else with the next batch. Resolves with the sequences that batch deleted. */
  private inLane(device: AuthenticatedDevice, seqs: Set<number>): Promise<Set<number>> {
    const key = `${device.accountId}/${device.deviceId}`;
    const lane = this.lanes.get(key);
    if (lane) {
      let last = lane.waiting.at(-1);
      if (!last || last.seqs.size + seqs.size > this.limits.maxAckSequences) lane.waiting.push((last = nextBatch()));
      for (const q of seqs) last.seqs.add(q);
      return last.done;
    }
    const fresh: Lane = { waiting: [] };
    this.lanes.set(key, fresh);
    const run = async (batch: Set<number>): Promise<Set<number>> => {
      try {
        return await this.deleteAcked(device, batch);
      } finally {
        const next = fresh.waiting.shift();
        if (next) run(next.seqs).then(next.resolve, next.reject);
        else this.lanes.delete(key);
      }
    };
    return run(seqs);
  }

  /** Deletes the acknowledged sequences that are the device's; returns those it deleted. */
  private async deleteAcked(device: AuthenticatedDevice, seqs: Set<number>): Promise<Set<number>> {
    const loc = this.mailboxes.locate(device);
    const local = [...this.hub.streamsOf(device.accountId, device.deviceId)];
    const provenLocally = (q: number) => local.some((s) => s.inFlight.has(q));

    // Phase 1: which sequences are the caller's. A sequence that is not (another device's
    // mail, already deleted, never used) is left alone and answered exactly like one already
    // acked: no error, not counted, one read either way, so Ack tells nothing about mail
    // that is not the caller's (no delivery oracle).
    const owned: number[] = [];
    await storeOp("the ack check", () =>
      Promise.all(
        [...seqs].map(async (q) => {
          if (provenLocally(q)) {
            owned.push(q);
            return;
          }
          const m = await this.mailboxes.bySeq(loc.stream, q);
          if (m && m.subject === loc.subject) owned.push(q);
        }),
      ),
    );

    // Streams of the device on other instances may count this mail as stored (in flight
    // there) while their own Ack's purge checks a count: deleted under them before they
    // know, it could let the count match over mail they never saw. They hear "acking" (in
    // order before anything this instance asks nats-server next) before the first delete.
    // No hint when the device's current stream is here and delivered every sequence: a
    // stream elsewhere is an older one on its way out (a newer one would have replaced this).
    const acked = [...seqs];
    const deliveredHere = acked.every((q) => local.some((s) => s.owner && s.inFlight.has(q)));
    if (!deliveredHere && owned.length) await this.mailboxes.signalFirst(device, { kind: "acking", sequences: owned });

    // Phase 2: delete. An acknowledged prefix of the mailbox lying close together goes in one
    // purge (each JetStream request costs nats-server ~30 us before its work, so one for a
    // whole batch); whatever the purge does not cover, one pipelined delete per sequence.
    const plan = owned.length === seqs.size && this.closeTogether(seqs) ? purgePlanOf(local, seqs) : undefined;
    let purge = plan?.verified ?? false;
    if (plan && !purge && plan.covered >= this.countCheckMinBatch(loc.stream)) {
      // Live-pushed mail: purge only if the mailbox stored nothing the stream does not know
      // (then nothing undelivered can sit below the bound). What the stream knows at or below
      // the answer's last sequence was stored when nats-server counted, so the count holds it;
      // if it holds nothing more, no unknown mail was stored then, and later mail gets higher
      // sequences than the bound.
      const stored = await storeOp("the ack check", () => this.mailboxes.countStored(device));
      // What the stream delivered or queued while the count was asked for may lie below the
      // bound (a late message of this instance's, behind one fetched for another's hint): it
      // is in the count and known, so the numbers would match. The plan must still hold.
      purge = plan.stream.purgePlan(seqs)?.bound === plan.bound && stored.count === plan.stream.knownStoredUpTo(stored.lastSeq);
    }
    const deleted = new Set<number>();
    let rest = owned;
    if (plan && purge) {
      const bound = plan.bound;
      const purged = await storeOp("deleting acked mail", () => this.mailboxes.purgeBelow(device, bound + 1));
      // A purge reports a count only: when some were gone already, count the lowest as deleted.
      const below = owned.filter((q) => q <= bound).sort((a, b) => a - b);
      for (const q of below.slice(0, purged)) deleted.add(q);
      rest = owned.filter((q) => q > bound);
    }
    if (rest.length > 0) {
      const results = await storeOp("deleting acked mail", () => Promise.all(rest.map((q) => this.mailboxes.delete(loc.stream, q))));
      rest.forEach((q, i) => results[i] && deleted.add(q));
    }

    this.metrics?.acked(deleted.size);
    // Free the window of this device's stream, here directly and on other instances by hint.
    for (const s of local) s.acked(acked);
    if (!deliveredHere) this.mailboxes.signal(device, { kind: "acked", sequences: acked });
    return deleted;
  }

  /** The fewest sequences a purge must cover to be worth its count check in `stream` (SUBJECTS_PER_DELETE). */
  private countCheckMinBatch(stream: string): number {
    return COUNT_CHECK_MIN_BATCH + Math.floor((this.mailboxes.knownSubjects(stream) ?? 0) / this.subjectsPerDelete);
  }

  /** The sequences span at most purgeMaxSpan (see PURGE_MAX_SPAN). */
  private closeTogether(seqs: Set<number>): boolean {
    let low = Number.MAX_SAFE_INTEGER;
    let high = 0;
    for (const q of seqs) {
      if (q < low) low = q;
      if (q > high) high = q;
    }
    return high - low <= this.purgeMaxSpan;
  }
}

/** The first local stream's purge plan for `seqs`, with that stream (it answers the count check). */
function purgePlanOf(local: ReceiveStream[], seqs: Set<number>): (NonNullable<ReturnType<ReceiveStream["purgePlan"]>> & { stream: ReceiveStream }) | undefined {
  for (const stream of local) {
    const plan = stream.purgePlan(seqs);
    if (plan) return { ...plan, stream };
  }
  return undefined;
}
