/**
 * The delivery ledger of a reliability run: what senders sent, what the server acknowledged
 * (Send answered Stored, with the per-device sequence), what receivers got and acked. From it:
 * lost (acknowledged, never delivered), duplicated after ack (delivered again after the
 * receiver's Ack succeeded), per-sender order violations, and sequence mismatches.
 *
 * Keys are strings: devices as "account/device", messages as hex message ids.
 */

export interface LedgerSummary {
  scenario: string;
  faults: number;
  sent: number;
  acknowledged: number;
  delivered: number;
  lost: number;
  duplicatedAfterAck: number;
  /** Delivered more than once before its ack succeeded (allowed: at-least-once until acked). */
  redelivered: number;
  orderViolations: number;
  /** Delivered with another sequence than the one Stored named (must be 0). */
  sequenceMismatches: number;
  /** Receive streams the receivers had to reopen (informational). */
  reconnects: number;
  /**
   * Replicated streams whose replicas still disagreed (count, sequence range) after the run:
   * NATS-level divergence, under everything else in the row (informational; set by the run).
   */
  divergedStreams: number;
  /** Human-readable samples of anything that must be 0. */
  problems: string[];
}

interface SentMessage {
  sender: string;
  receiver: string;
  /** Position in the sender's own sequence of sends (per sender, all receivers). */
  index: number;
  storedSeq?: bigint;
  deliveries: number;
  acked: boolean;
}

const MAX_SAMPLES = 20;

export class Ledger {
  readonly messages = new Map<string, SentMessage>();
  faults = 0;
  reconnects = 0;
  divergedStreams = 0;
  private nextIndex = new Map<string, number>();
  /** Highest index delivered so far per sender->receiver pair (first deliveries only). */
  private lastDelivered = new Map<string, number>();
  private duplicatedAfterAck = 0;
  private redelivered = 0;
  private orderViolations = 0;
  private sequenceMismatches = 0;
  private unknown = 0;
  private readonly problems: string[] = [];

  /**
   * Optional forensics for a delivery whose sequence differs from the Stored one: called
   * before the receiver acks it (so the message is still in the store) and its answer goes
   * into the problems. At most a few calls per run.
   */
  inspector?: (a: { receiver: string; id: string; storedSeq: bigint; deliveredSeq: bigint }) => Promise<string>;
  private inspections = 0;

  constructor(readonly scenario: string) {}

  /** Runs the inspector on a sequence mismatch just reported by delivered() (bounded). */
  async inspect(receiver: string, id: string, deliveredSeq: bigint): Promise<void> {
    const m = this.messages.get(id);
    if (!this.inspector || !m || m.storedSeq === undefined || m.storedSeq === deliveredSeq || this.inspections >= 4) return;
    this.inspections++;
    try {
      this.problem(`inspect ${id}: ${await this.inspector({ receiver, id, storedSeq: m.storedSeq, deliveredSeq })}`);
    } catch (err) {
      this.problem(`inspect ${id} failed: ${String(err)}`);
    }
  }

  private problem(p: string): void {
    if (this.problems.length < MAX_SAMPLES) this.problems.push(p);
  }

  /** A sender is about to send `id` (first attempt); returns its per-sender index. */
  sent(id: string, sender: string, receiver: string): number {
    const index = this.nextIndex.get(sender) ?? 0;
    this.nextIndex.set(sender, index + 1);
    this.messages.set(id, { sender, receiver, index, deliveries: 0, acked: false });
    return index;
  }

  /** The server answered Stored with this sequence for the receiver's mailbox. */
  stored(id: string, seq: bigint): void {
    const m = this.messages.get(id);
    if (!m) return;
    if (m.storedSeq !== undefined && m.storedSeq !== seq) {
      this.sequenceMismatches++;
      this.problem(`${id}: retry answered sequence ${seq}, first answer was ${m.storedSeq}`);
    }
    m.storedSeq ??= seq;
  }

  /** A receiver got `id` with mailbox sequence `seq`. */
  delivered(receiver: string, id: string, seq: bigint): void {
    const m = this.messages.get(id);
    if (!m) {
      this.unknown++;
      this.problem(`${receiver} got unknown message ${id}`);
      return;
    }
    if (m.receiver !== receiver) this.problem(`${id} for ${m.receiver} arrived at ${receiver}`);
    if (m.acked) {
      this.duplicatedAfterAck++;
      this.problem(`${id} (seq ${seq}) delivered to ${receiver} again after its ack`);
    } else if (m.deliveries > 0) {
      this.redelivered++;
    }
    if (m.storedSeq !== undefined && m.storedSeq !== seq) {
      this.sequenceMismatches++;
      this.problem(`${id} stored as seq ${m.storedSeq}, delivered as seq ${seq}`);
    }
    if (m.deliveries === 0) {
      const pair = `${m.sender}->${receiver}`;
      const last = this.lastDelivered.get(pair) ?? -1;
      if (m.index < last) {
        this.orderViolations++;
        this.problem(`${pair}: send #${m.index} delivered after send #${last}`);
      } else {
        this.lastDelivered.set(pair, m.index);
      }
    }
    m.deliveries++;
  }

  /** The receiver's Ack covering `id` succeeded. */
  acked(id: string): void {
    const m = this.messages.get(id);
    if (m) m.acked = true;
  }

  isDelivered(id: string): boolean {
    return (this.messages.get(id)?.deliveries ?? 0) > 0;
  }

  /** Acknowledged by the server and not yet delivered. */
  pending(): string[] {
    const out: string[] = [];
    for (const [id, m] of this.messages) if (m.storedSeq !== undefined && m.deliveries === 0) out.push(id);
    return out;
  }

  /** Acknowledged by the server and not yet delivered, for one receiver. */
  pendingFor(receiver: string): number {
    let n = 0;
    for (const m of this.messages.values()) if (m.receiver === receiver && m.storedSeq !== undefined && m.deliveries === 0) n++;
    return n;
  }

  /** Something the run observed that is worth a line in the problems (it fails nothing by itself). */
  note(p: string): void {
    this.problem(p);
  }

  summary(): LedgerSummary {
    let acknowledged = 0;
    let delivered = 0;
    let lost = 0;
    const problems = [...this.problems];
    for (const [id, m] of this.messages) {
      if (m.storedSeq !== undefined) acknowledged++;
      if (m.deliveries > 0) delivered++;
      if (m.storedSeq !== undefined && m.deliveries === 0) {
        lost++;
        if (problems.length < MAX_SAMPLES) problems.push(`${id} (${m.sender} -> ${m.receiver}, seq ${m.storedSeq}) acknowledged but never delivered`);
      }
    }
    return {
      scenario: this.scenario,
      faults: this.faults,
      sent: this.messages.size,
      acknowledged,
      delivered,
      lost,
      duplicatedAfterAck: this.duplicatedAfterAck + this.unknown,
      redelivered: this.redelivered,
      orderViolations: this.orderViolations,
      sequenceMismatches: this.sequenceMismatches,
      reconnects: this.reconnects,
      divergedStreams: this.divergedStreams,
      problems,
    };
  }
}

const COLUMNS: [keyof LedgerSummary, string][] = [
  ["scenario", "scenario"],
  ["faults", "faults injected"],
  ["sent", "sent"],
  ["acknowledged", "acknowledged"],
  ["delivered", "delivered"],
  ["lost", "lost (must be 0)"],
  ["duplicatedAfterAck", "duplicated after ack (must be 0)"],
  ["redelivered", "redelivered before ack"],
  ["orderViolations", "order violations"],
  ["sequenceMismatches", "seq mismatches"],
  ["reconnects", "stream reconnects"],
  ["divergedStreams", "diverged R3 streams"],
];

/** A Markdown table of the rows plus a total line. */
export function formatLedgerTable(rows: LedgerSummary[], title = "reliability"): string {
  const total: LedgerSummary = {
    scenario: "TOTAL",
    faults: 0,
    sent: 0,
    acknowledged: 0,
    delivered: 0,
    lost: 0,
    duplicatedAfterAck: 0,
    redelivered: 0,
    orderViolations: 0,
    sequenceMismatches: 0,
    reconnects: 0,
    divergedStreams: 0,
    problems: [],
  };
  for (const r of rows) {
    for (const [k] of COLUMNS) if (k !== "scenario") (total[k] as number) += r[k] as number;
  }
  const all = [...rows, total];
  const cells = all.map((r) => COLUMNS.map(([k]) => String(r[k])));
  const widths = COLUMNS.map(([, h], i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join(" | ")} |`;
  return [
    `### ${title}`,
    "",
    line(COLUMNS.map(([, h]) => h)),
    `|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|")}|`,
    ...cells.map(line),
    "",
  ].join("\n");
}
