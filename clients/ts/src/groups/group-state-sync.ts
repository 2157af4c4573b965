/**
 * Group state sync: the signed state changes this device receives (GroupControl.update and
 * leave), verified against the version it holds and accepted, queued behind a gap, resolved as
 * a fork, or rejected; changes whose signer's device list cannot be fetched wait and are
 * verified again with backoff. Also what this device's own changes need of it: the signing
 * keys of a change's signer, accepting its own next version, and remembering it so a lost
 * fork is published again on top of the winner.
 */
import type { SenderKeyDistribution, SignedGroupState } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import { bytesEqual, toHex } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { addressKey, type DeviceRef } from "../protocol/address.js";
import type { GroupCipher } from "../protocol/group-cipher.js";
import { GROUP_ID_BYTES } from "../protocol/group-labels.js";
import {
  compareForks,
  diffGroupStates,
  encodeSignedGroupState,
  GroupStateError,
  isAdmin,
  parseSignedGroupState,
  roleOf,
  verifyFirstSeen,
  verifyGenesis,
  verifyGroupStateUpdate,
  type GroupChange,
  type SigningKeyLookup,
  type VerifiedGroupState,
} from "../protocol/group-state.js";
import type { GroupRecord, GroupStores } from "../store/group-interfaces.js";
import { Backoff } from "../util/backoff.js";
import { unrefTimer } from "../util/timers.js";
import type { KeyedLock } from "../util/keyed-lock.js";
import { GroupDirectoryError, GroupError } from "./group-errors.js";
import type { GroupPort } from "./group-port.js";
import { currentOf, deactivate, emptyState, forgetSender, signerOf, verifiedFromBytes, versionOf } from "./group-records.js";
import type { WaitingContent } from "./waiting-content.js";

const MAX_RETRY_DELAY_MS = 300_000;

export interface GroupStateSyncDeps {
  provider: CryptoProvider;
  stores: GroupStores;
  port: GroupPort;
  cipher: GroupCipher;
  now(): number;
  /** The group manager's per-group locks (a change and a send of one group never interleave). */
  locks: KeyedLock;
  waiting: WaitingContent;
  /** First delay before held-back changes are verified again (doubles up to 5 minutes). */
  retryDelayMs: number;
  /** Publishes a change as this device (a change that lost a fork; an admin removing a member who left). */
  publish(groupId: string, change: GroupChange): Promise<unknown>;
  /** A sender key that waited for the state that makes its sender a member. */
  handleDistribution(from: DeviceRef, dist: SenderKeyDistribution): Promise<void>;
}

export class GroupStateSync {
  /** The last change this device published per group (hex), re-applied if it loses a fork. */
  private readonly ownChanges = new Map<string, { hash: string; change: GroupChange }>();
  /** Own changes that lost a fork, to publish again on top of the winner (group hex). */
  private readonly toReapply = new Map<string, GroupChange>();
  /** Groups with updates held back because the signer's device list could not be fetched. */
  private readonly deferred = new Set<string>();
  /** Retries of deferred group work (a signer's device list that could not be fetched). */
  private readonly retryBackoff: Backoff;
  private retryTimer?: ReturnType<typeof setTimeout>;

  constructor(private readonly d: GroupStateSyncDeps) {
    this.retryBackoff = new Backoff({ baseMs: d.retryDelayMs, maxMs: MAX_RETRY_DELAY_MS });
  }

  /** True while a change of the group waits for its signer's device list. */
  isDeferred(groupId: string): boolean {
    return this.deferred.has(groupId);
  }

  /** A change of the group restored from the store that may have been held back: verified again soon. */
  deferRestored(groupId: string): void {
    this.deferred.add(groupId);
    this.scheduleRetry();
  }

  /** Remembers this device's own change (its resulting state hash), re-applied if it loses a fork. */
  recordOwnChange(groupId: string, hash: Uint8Array, change: GroupChange): void {
    this.ownChanges.set(groupId, { hash: toHex(hash), change });
  }

  async handleUpdate(from: DeviceRef, signed: SignedGroupState): Promise<void> {
    let groupId: string;
    try {
      groupId = toHex(parseSignedGroupState(signed).groupId);
    } catch (e) {
      this.rejectState(undefined, from, e);
      return;
    }
    const outcome = await this.d.locks.run(groupId, () => this.applyUpdate(groupId, from, signed));
    if (outcome === "deferred") return;
    await this.drain(groupId);
    const lost = this.toReapply.get(groupId);
    if (lost) {
      // Our change lost a fork: publish it again on top of the winner, when it still applies.
      this.toReapply.delete(groupId);
      try {
        await this.d.publish(groupId, lost);
      } catch (e) {
        if (!(e instanceof GroupError)) throw e;
        this.d.port.emit({
          type: "group-rejected",
          groupId,
          from: this.d.port.self,
          what: "state",
          problem: "fork-lost",
          detail: `own change no longer applies: ${e.message}`,
        });
      }
    }
  }

  /**
   * One signed state for the group, under its lock. "deferred": the signer's device list
   * could not be fetched, so there is no verdict yet (it waits and is verified again later);
   * "handled": accepted, queued behind a gap, ignored or reported.
   */
  private async applyUpdate(groupId: string, from: DeviceRef, signed: SignedGroupState): Promise<"deferred" | "handled"> {
    const signer = signed.signer?.accountId ?? "";
    const unavailable = new Set<string>();
    let lookup = await this.lookupFor([signer], false, unavailable);
    // A signer device we do not know yet (linked since our list was fetched): refresh once.
    if (signed.signer && !lookup({ accountId: signer, deviceId: signed.signer.deviceId })) {
      unavailable.clear();
      lookup = await this.lookupFor([signer], true, unavailable);
      if (unavailable.has(signer)) {
        // The list could not be fetched (network, server): no verdict on the change. It
        // waits and is verified again later (backoff, next send, next change of the group).
        this.d.waiting.queues.push("updates", groupId, { from, signed }, signed.state.length + signed.signature.length);
        this.deferred.add(groupId);
        this.scheduleRetry();
        return "deferred";
      }
    }
    const record = await this.d.stores.groups.load(groupId);
    if (record && !record.active) {
      const current = currentOf(this.d.provider, record);
      if (roleOf(parseSignedGroupState(signed), this.d.port.self.accountId) === undefined) {
        // Not ours any more: keep the chain current when it follows on, quietly otherwise.
        try {
          const verifiedNext = await verifyGroupStateUpdate(this.d.provider, current, signed, lookup);
          await this.accept(record, current, verifiedNext, signerOf(verifiedNext));
        } catch (e) {
          if (!(e instanceof GroupStateError)) throw e;
        }
        return "handled";
      }
      // Added back after we left or were removed: we missed the versions in between, so
      // this is a first-seen state (below), accepted only when newer than what we hold.
      if (parseSignedGroupState(signed).version <= current.state.version) return "handled";
    }
    if (!record?.active) await this.join(groupId, from, signed, record, lookup);
    else await this.advance(groupId, from, signed, record, lookup);
    return "handled";
  }

  /** A group this account is not (or no longer) in: a state that lists it, seen first. */
  private async join(groupId: string, from: DeviceRef, signed: SignedGroupState, record: GroupRecord | undefined, lookup: SigningKeyLookup): Promise<void> {
    let v: VerifiedGroupState;
    try {
      v =
        parseSignedGroupState(signed).version === 1n
          ? await verifyGenesis(this.d.provider, signed, lookup)
          : await verifyFirstSeen(this.d.provider, signed, lookup, this.d.port.self.accountId);
      if (roleOf(v.state, this.d.port.self.accountId) === undefined) throw new GroupStateError("not-a-member", "this account is not a member of that state");
    } catch (e) {
      this.rejectState(groupId, from, e);
      return;
    }
    const fresh: GroupRecord = {
      groupId: v.state.groupId,
      signedState: encodeSignedGroupState(v.signed),
      senderKeys: {},
      distributedTo: [],
      departed: [],
      active: true,
      updatedAtMs: this.d.now(),
    };
    if (record) await this.d.cipher.forgetOwn(record.groupId); // a new sending key after a gap in membership
    await this.d.stores.groups.save(groupId, fresh);
    this.d.port.emit({
      type: "group-updated",
      groupId,
      version: Number(v.state.version),
      signer: signerOf(v),
      diff: diffGroupStates(emptyState(), v.state),
      joined: true,
    });
  }

  /** The next version of a group this account is in (or the same again, a fork, a gap). */
  private async advance(groupId: string, from: DeviceRef, signed: SignedGroupState, record: GroupRecord, lookup: SigningKeyLookup): Promise<void> {
    const current = currentOf(this.d.provider, record);
    let next: VerifiedGroupState;
    try {
      next = await verifyGroupStateUpdate(this.d.provider, current, signed, lookup);
    } catch (e) {
      if (e instanceof GroupStateError && e.problem === "stale") {
        if (bytesEqual(this.d.provider.sha256(signed.state), current.hash)) return; // the same version again
        if (await this.tryFork(record, current, signed, lookup)) return;
      }
      if (e instanceof GroupStateError && e.problem === "gap") {
        this.d.waiting.queues.push("updates", groupId, { from, signed }, signed.state.length + signed.signature.length);
        return;
      }
      this.rejectState(groupId, from, e);
      return;
    }
    await this.accept(record, current, next, signerOf(next));
  }

  /** Fork choice at the current version: the lower state hash wins while nothing builds on either. */
  private async tryFork(record: GroupRecord, current: VerifiedGroupState, signed: SignedGroupState, lookup: SigningKeyLookup): Promise<boolean> {
    if (!record.previousSignedState) return false;
    const previous = verifiedFromBytes(this.d.provider, record.previousSignedState);
    let candidate: VerifiedGroupState;
    try {
      candidate = await verifyGroupStateUpdate(this.d.provider, previous, signed, lookup);
    } catch {
      return false;
    }
    if (compareForks(candidate, current) >= 0) return true; // ours wins; the other is dropped
    await this.accept(record, current, candidate, signerOf(candidate), previous);
    const id = toHex(record.groupId);
    const mine = this.ownChanges.get(id);
    if (mine && mine.hash === toHex(current.hash)) this.toReapply.set(id, mine.change);
    return true;
  }

  /** Applies a verified next version: membership effects, store, event. */
  async accept(record: GroupRecord, current: VerifiedGroupState, next: VerifiedGroupState, signer: DeviceRef, previous?: VerifiedGroupState): Promise<void> {
    const id = toHex(record.groupId);
    const diff = diffGroupStates(current.state, next.state);
    record.previousSignedState = previous ? encodeSignedGroupState(previous.signed) : record.signedState;
    record.signedState = encodeSignedGroupState(next.signed);
    record.departed = record.departed.filter((a) => roleOf(next.state, a) !== undefined);
    record.updatedAtMs = this.d.now();
    for (const account of diff.removed) await forgetSender(this.d.cipher, record, account);
    // Accounts added (back): their devices need our key again, at its current iteration.
    record.distributedTo = record.distributedTo.filter((k) => !diff.added.some((a) => k.startsWith(`${a}.`)));
    await this.d.stores.groups.save(id, record);
    if (roleOf(next.state, this.d.port.self.accountId) === undefined && record.active) {
      await deactivate(this.d.cipher, this.d.stores, id, this.d.now());
      this.d.port.emit({ type: "group-left", groupId: id, removedBy: signer });
    }
    // Removed members' devices are still in distributedTo: the next send rotates (ensureDistributed).
    this.d.port.emit({ type: "group-updated", groupId: id, version: Number(next.state.version), signer, diff, joined: false });
  }

  async handleLeave(from: DeviceRef, groupIdBytes: Uint8Array): Promise<void> {
    if (groupIdBytes.length !== GROUP_ID_BYTES) return;
    const id = toHex(groupIdBytes);
    const adminShouldPublish = await this.d.locks.run(id, async () => {
      const record = await this.d.stores.groups.load(id);
      if (!record?.active) return false;
      const state = currentOf(this.d.provider, record).state;
      if (from.accountId === this.d.port.self.accountId) {
        // Another device of this account left: so does this one.
        await deactivate(this.d.cipher, this.d.stores, id, this.d.now());
        this.d.port.emit({ type: "group-left", groupId: id });
        return false;
      }
      if (roleOf(state, from.accountId) === undefined) return false;
      if (!record.departed.includes(from.accountId)) record.departed.push(from.accountId);
      await forgetSender(this.d.cipher, record, from.accountId);
      await this.d.stores.groups.save(id, record);
      this.d.port.emit({ type: "group-member-left", groupId: id, accountId: from.accountId });
      return isAdmin(state, this.d.port.self.accountId);
    });
    if (adminShouldPublish) {
      try {
        await this.d.publish(id, { remove: [from.accountId] });
      } catch (e) {
        // Another admin may have published the same removal first: nothing to do.
        if (!(e instanceof GroupError)) throw e;
      }
    }
  }

  /** Retries waiting updates and distributions of a group after its state changed. */
  private async drain(groupId: string): Promise<void> {
    const record = await this.d.stores.groups.load(groupId);
    const version = record ? currentOf(this.d.provider, record).state.version : 0n;
    const u = this.d.waiting.queues.peek("updates", groupId).find((x) => versionOf(x.signed) === version + 1n);
    if (u) {
      this.d.waiting.queues.removeItem("updates", groupId, u);
      await this.handleUpdate(u.from, u.signed); // drains again after it
      return;
    }
    if (!record) return;
    const dists = this.d.waiting.queues.take("distributions", groupId);
    for (const d of dists) await this.d.handleDistribution(d.sender, d.dist);
  }

  /**
   * A lookup of current devices' signing keys for these accounts (fetched now). An account
   * whose list is untrusted or unknown (GroupDirectoryError) signs nothing we accept; one whose
   * list could not be fetched (any other error: network, server) signs nothing either and is
   * added to `unavailable`, so the caller can try again later instead of rejecting.
   */
  async lookupFor(accounts: string[], refresh = false, unavailable?: Set<string>): Promise<SigningKeyLookup> {
    const keys = new Map<string, Uint8Array>();
    for (const a of new Set(accounts)) {
      if (!a) continue;
      try {
        for (const d of await this.d.port.devices(a, { refresh })) keys.set(addressKey({ accountId: a, deviceId: d.deviceId }), d.signingKey);
      } catch (e) {
        if (!(e instanceof GroupDirectoryError)) unavailable?.add(a);
      }
    }
    return (d) => keys.get(addressKey(d));
  }

  /**
   * Verifies again the state changes held back because their signer's device list could not
   * be fetched (the Messenger calls it when the connection comes back; a timer with backoff
   * and the next send to the group do too).
   */
  async retryPending(): Promise<void> {
    await this.d.waiting.restore();
    try {
      for (const id of [...this.deferred]) {
        this.deferred.delete(id);
        const updates = this.d.waiting.queues.take("updates", id);
        updates.sort((a, b) => (versionOf(a.signed) < versionOf(b.signed) ? -1 : versionOf(a.signed) > versionOf(b.signed) ? 1 : 0));
        // Each goes through the usual path again: accepted, rejected, waits for a gap, or held again.
        for (let i = 0; i < updates.length; i++) {
          try {
            await this.handleUpdate(updates[i].from, updates[i].signed);
          } catch (e) {
            for (const u of updates.slice(i)) this.d.waiting.queues.push("updates", id, u, u.signed.state.length + u.signed.signature.length); // kept, tried again later
            this.deferred.add(id);
            this.scheduleRetry();
            throw e;
          }
        }
      }
    } finally {
      await this.d.waiting.persist();
    }
    if (this.deferred.size === 0) this.retryBackoff.reset();
  }

  /** Stops the retry timer (the sync stays usable; a later deferral starts it again). */
  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    const delay = this.retryBackoff.next();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryPending().catch(() => this.scheduleRetry());
    }, delay);
    unrefTimer(this.retryTimer);
  }

  private rejectState(groupId: string | undefined, from: DeviceRef, e: unknown): void {
    if (!(e instanceof GroupStateError)) throw e;
    this.d.port.emit({ type: "group-rejected", groupId, from, what: "state", problem: e.problem, detail: e.message });
  }
}
