/**
 * A rate limit shared by every instance, at the cost of one publish per use: a JetStream
 * stream whose subjects are the limited keys, keeping at most `max` messages per subject for
 * `windowMs` and refusing the next (discard new per subject). A publish that JetStream
 * refuses with "maximum messages per subject exceeded" means the key used up its window.
 * Works on nats-server 2.9 (discard_new_per_subject).
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager } from "@nats-io/jetstream";
import { createHash } from "node:crypto";
import { ensureStreams } from "./layout.js";
import type { JetStreamPublisher } from "./publisher.js";

/** JetStream's error code for a subject at its max_msgs_per_subject with discard new. */
const PER_SUBJECT_LIMIT = 10077;

export class WindowLimit {
  private constructor(
    private readonly publisher: JetStreamPublisher,
    private readonly prefix: string,
    readonly max: number,
    readonly windowMs: number,
    /** Creates the stream again (it is gone after an operator deleted it, or a store was lost). */
    private readonly ensure: () => Promise<void>,
  ) {}

  /** Creates (or updates) the stream SP_LIMIT_<NAME> for this limit. */
  static async open(jsm: JetStreamManager, publisher: JetStreamPublisher, name: string, max: number, windowMs: number, replicas: number): Promise<WindowLimit> {
    const prefix = `sp.limit.${name}`;
    const ensure = () =>
      ensureStreams(jsm, [
        {
          name: `SP_LIMIT_${name.toUpperCase()}`,
          subjects: [`${prefix}.*`],
          retention: RetentionPolicy.Limits,
          // File storage: the windows survive a nats-server restart (memory streams do not).
          storage: StorageType.File,
          max_age: windowMs * 1_000_000,
          max_msgs_per_subject: max,
          discard: DiscardPolicy.New,
          discard_new_per_subject: true,
          num_replicas: replicas,
        },
      ]);
    await ensure();
    return new WindowLimit(publisher, prefix, max, windowMs, ensure);
  }

  /** Counts one use of `key`; false when the key already used `max` in the window. */
  async take(key: string): Promise<boolean> {
    // Keys become one subject token (no dots or wildcards, bounded length).
    const subject = `${this.prefix}.${createHash("sha256").update(key).digest("base64url").slice(0, 22)}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.publisher.publish(subject, new Uint8Array(0));
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === PER_SUBJECT_LIMIT) return false;
        // No stream stores the subject: create it again, once.
        if ((err as Error).name === "NoResponders" && attempt === 0) {
          await this.ensure();
          continue;
        }
        throw err;
      }
    }
  }
}
