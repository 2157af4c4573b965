/**
 * The group layer's waiting content, persisted: group messages waiting for their sender key
 * ("bodies", by "<sender>/<distribution hex>"), sender keys waiting for the state that makes
 * their sender a member ("distributions", by group hex), and states skipping a version or
 * held back by a directory failure ("updates", by group hex). Bounded (pending-queues.ts); a
 * dropped item is reported. Restored from GroupStores.pending once; each save writes only
 * what changed, one save at a time.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { SenderKeyDistributionSchema, type SenderKeyDistribution, type SignedGroupState } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import type { SenderKeyMessage } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { toHex } from "../crypto/bytes.js";
import { addressKey, type DeviceRef } from "../protocol/address.js";
import { decodeSignedGroupState, encodeSignedGroupState } from "../protocol/group-state.js";
import { encodeSenderKeySharedBody, parseSenderKeyBody } from "../protocol/sender-keys.js";
import type { GroupPendingItem, GroupPendingStore } from "../store/group-interfaces.js";
import type { GroupEvent } from "./group-events.js";
import { groupIdOf } from "./group-records.js";
import { PendingQueues, type PendingEntry, type PendingLimits } from "./pending-queues.js";

export interface PendingBody {
  sender: DeviceRef;
  messageId: Uint8Array;
  message: SenderKeyMessage;
  serverTimestampMs: number;
}

export interface PendingKinds extends Record<string, unknown> {
  bodies: PendingBody;
  distributions: { sender: DeviceRef; dist: SenderKeyDistribution };
  updates: { from: DeviceRef; signed: SignedGroupState };
}

export interface WaitingContentOptions {
  limits: PendingLimits;
  /** Where waiting items are kept; without it they live in memory only. */
  store?: GroupPendingStore;
  emit(e: GroupEvent): void;
  /** A restored update of this group (hex) was held back before the restart: verify it again. */
  onRestoredUpdate(groupId: string): void;
}

export class WaitingContent {
  readonly queues: PendingQueues<PendingKinds>;
  private restored?: Promise<void>;
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly o: WaitingContentOptions) {
    this.queues = new PendingQueues<PendingKinds>(o.limits, (e, bound) => this.reportDropped(e, bound));
  }

  /** Restores the queues from the store (once; later calls wait for that one). */
  restore(): Promise<void> {
    this.restored ??= (async () => {
      for (const item of (await this.o.store?.list()) ?? []) {
        if (item.kind === "body") {
          const message = parseSenderKeyBody(item.sharedBody);
          if (!message) continue;
          const entry = { sender: item.sender, messageId: item.messageId, message, serverTimestampMs: item.serverTimestampMs };
          this.queues.push(
            "bodies",
            `${addressKey(item.sender)}/${toHex(message.distributionId)}`,
            entry,
            item.sharedBody.length + item.messageId.length,
            item.id,
          );
        } else if (item.kind === "distribution") {
          const dist = fromBinary(SenderKeyDistributionSchema, item.distribution);
          this.queues.push("distributions", toHex(dist.groupId), { sender: item.sender, dist }, item.distribution.length, item.id);
        } else {
          const signed = decodeSignedGroupState(item.signed);
          const gid = groupIdOf(signed);
          if (gid) {
            this.queues.push("updates", gid, { from: item.from, signed }, item.signed.length, item.id);
            this.o.onRestoredUpdate(gid); // held back by the directory before the restart, maybe
          }
        }
      }
    })();
    return this.restored;
  }

  /**
   * Saves what changed in the queues since the last save (before the caller acknowledges the
   * mail): only the items added and removed, one record each. Saves run one at a time.
   */
  persist(): Promise<void> {
    const run = this.saving.then(async () => {
      const pending = this.o.store;
      if (!pending) return;
      const { put, removed } = this.queues.takeChanges();
      for (const e of put) await pending.put(pendingRecord(e));
      for (const id of removed) await pending.remove(id);
    });
    this.saving = run.catch(() => undefined);
    return run;
  }

  /** The oldest waiting item was dropped to keep the queues bounded. */
  private reportDropped(e: PendingEntry<PendingKinds>, bound: "per-key" | "items" | "bytes"): void {
    const detail = `waiting-content bound reached (${bound}): oldest item dropped`;
    if (e.kind === "bodies") {
      const b = e.item as PendingBody;
      this.o.emit({ type: "group-rejected", from: b.sender, what: "message", problem: "queue-full", detail });
    } else if (e.kind === "distributions") {
      const d = e.item as PendingKinds["distributions"];
      this.o.emit({ type: "group-rejected", groupId: e.key, from: d.sender, what: "distribution", problem: "queue-full", detail });
    } else {
      const u = e.item as PendingKinds["updates"];
      this.o.emit({ type: "group-rejected", groupId: e.key, from: u.from, what: "state", problem: "queue-full", detail });
    }
  }
}

/** The stored form of a waiting item. */
function pendingRecord(e: PendingEntry<PendingKinds>): GroupPendingItem {
  if (e.kind === "bodies") {
    const b = e.item as PendingBody;
    const m = b.message;
    return {
      id: e.id,
      kind: "body",
      sender: b.sender,
      messageId: b.messageId,
      sharedBody: encodeSenderKeySharedBody(m.distributionId, m.chainId, m.iteration, m.ciphertext, m.signature),
      serverTimestampMs: b.serverTimestampMs,
    };
  }
  if (e.kind === "distributions") {
    const d = e.item as PendingKinds["distributions"];
    return { id: e.id, kind: "distribution", sender: d.sender, distribution: toBinary(SenderKeyDistributionSchema, d.dist) };
  }
  const u = e.item as PendingKinds["updates"];
  return { id: e.id, kind: "update", from: u.from, signed: encodeSignedGroupState(u.signed) };
}
