/**
 * Keeps this device reachable: replenishes one-time prekeys when the server reports few
 * left (GetPrekeyCount), and rotates the signed X25519 prekey and the signed ML-KEM prekey
 * when they are older than the rotation interval (weekly by default). Replaced signed and KEM
 * prekeys are kept for a grace period (keepOldMs, 30 days) counted from when they were
 * *replaced* (AccountRecord.retired*Prekeys, written once the new key is uploaded), so
 * prekey messages written against them still decrypt. A key without a recorded retirement
 * (replaced before these were recorded, or generated for an upload that failed) counts as
 * retired when the next stored key was created, which is never earlier than it really was.
 * Run at start, after every new incoming session (it consumed a one-time prekey), and on a
 * timer.
 */
import type { UploadPrekeysRequest } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { generatePrekeyBatch } from "../protocol/device-keys.js";
import type { ProtocolStores } from "../protocol/stores.js";
import type { AccountRecord, ConversationStore, RetiredPrekey } from "../store/conversation-store.js";
import type { KeyRecordStore } from "../protocol/stores.js";
import type { MessengerEvent } from "../core/events.js";
import type { ServerApi } from "../transport/server-api.js";

export interface PrekeyPolicy {
  /** One-time prekeys to keep on the server (at most 100 are uploaded per request). */
  target: number;
  /** Replenish when fewer than this remain. */
  lowWatermark: number;
  /** Rotate the signed and KEM prekeys after this long. */
  rotateAfterMs: number;
  /** Keep replaced signed / KEM prekeys this long. */
  keepOldMs: number;
}

export const defaultPrekeyPolicy: PrekeyPolicy = {
  target: 100,
  lowWatermark: 25,
  rotateAfterMs: 7 * 24 * 3600_000,
  keepOldMs: 30 * 24 * 3600_000,
};

const MAX_PER_UPLOAD = 100;

export interface PrekeyMaintenanceDeps {
  api: ServerApi;
  provider: CryptoProvider;
  protocol: ProtocolStores;
  store: ConversationStore;
  now: () => number;
  emit: (e: MessengerEvent) => void;
  policy: PrekeyPolicy;
}

/** The prekeys of a brand-new device: signed and KEM prekey 1, one-time prekeys 1..target. */
export async function initialPrekeys(provider: CryptoProvider, protocol: ProtocolStores, policy: PrekeyPolicy, nowMs: number): Promise<UploadPrekeysRequest> {
  return generatePrekeyBatch(provider, protocol, {
    signedPrekeyId: 1,
    kemPrekeyId: 1,
    oneTimeFirstId: 1,
    oneTimeCount: Math.min(policy.target, MAX_PER_UPLOAD),
    nowMs,
  });
}

export class PrekeyMaintenance {
  private running?: Promise<void>;

  constructor(private readonly d: PrekeyMaintenanceDeps) {}

  /** Runs one check unless one is running; errors are left for the next run. */
  check(): Promise<void> {
    this.running ??= this.run()
      .catch(() => {})
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** One check; throws on failure. */
  async run(): Promise<void> {
    const account = await this.d.store.getAccount();
    if (!account) return;
    const now = this.d.now();
    const status = await this.d.api.directory.getPrekeyCount({});
    const p = this.d.policy;
    const rotate =
      now - account.signedPrekeyCreatedAtMs >= p.rotateAfterMs ||
      status.signedPrekeyId !== account.signedPrekeyId ||
      status.kemPrekeyId !== account.kemPrekeyId;
    const missing = status.oneTimePrekeyCount < p.lowWatermark ? Math.min(MAX_PER_UPLOAD, p.target - status.oneTimePrekeyCount) : 0;
    if (!rotate && missing <= 0) return;

    const next: AccountRecord = { ...account };
    if (rotate) {
      next.signedPrekeyId = account.signedPrekeyId + 1;
      next.kemPrekeyId = account.kemPrekeyId + 1;
      next.signedPrekeyCreatedAtMs = now;
      next.kemPrekeyCreatedAtMs = now;
    }
    const firstId = account.nextOneTimePrekeyId;
    if (missing > 0) next.nextOneTimePrekeyId = firstId + missing;
    // Counters first: if the upload fails, ids are skipped, never reused.
    await this.d.store.setAccount(next);
    const req = await generatePrekeyBatch(this.d.provider, this.d.protocol, {
      signedPrekeyId: rotate ? next.signedPrekeyId : undefined,
      kemPrekeyId: rotate ? next.kemPrekeyId : undefined,
      oneTimeFirstId: firstId,
      oneTimeCount: Math.max(0, missing),
      nowMs: now,
    });
    const res = await this.d.api.directory.uploadPrekeys(req);
    if (missing > 0) this.d.emit({ type: "prekeys-replenished", uploaded: missing, remaining: res.oneTimePrekeyCount });
    if (rotate) {
      this.d.emit({ type: "signed-prekey-rotated", signedPrekeyId: next.signedPrekeyId, kemPrekeyId: next.kemPrekeyId });
      // The previous keys stop being offered now (the server has the new ones).
      next.retiredSignedPrekeys = [...(next.retiredSignedPrekeys ?? []), { keyId: account.signedPrekeyId, retiredAtMs: now }];
      next.retiredKemPrekeys = [...(next.retiredKemPrekeys ?? []), { keyId: account.kemPrekeyId, retiredAtMs: now }];
      const cutoff = now - this.d.policy.keepOldMs;
      next.retiredSignedPrekeys = await prune(this.d.protocol.signedPrekeys, next.signedPrekeyId, next.retiredSignedPrekeys, cutoff);
      next.retiredKemPrekeys = await prune(this.d.protocol.kemPrekeys, next.kemPrekeyId, next.retiredKemPrekeys, cutoff);
      await this.d.store.setAccount(next);
    }
  }
}

/**
 * Removes the keys (other than `current`) replaced before `cutoff`; returns the retirement
 * records still needed. Without a record, a key counts as replaced when the next stored key
 * was created.
 */
async function prune<R extends { createdAtMs: number }>(
  store: KeyRecordStore<R>,
  current: number,
  retired: RetiredPrekey[],
  cutoff: number,
): Promise<RetiredPrekey[]> {
  const at = new Map(retired.map((r) => [r.keyId, r.retiredAtMs]));
  const ids = await store.ids();
  const keep: RetiredPrekey[] = [];
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id === current) continue;
    let retiredAt = at.get(id);
    if (retiredAt === undefined) {
      const successor = ids.slice(i + 1).find((x) => x > id);
      const r = successor === undefined ? undefined : await store.load(successor);
      if (!r) continue;
      retiredAt = r.createdAtMs;
    }
    if (retiredAt < cutoff) await store.remove(id);
    else if (at.has(id)) keep.push({ keyId: id, retiredAtMs: retiredAt });
  }
  return keep;
}
