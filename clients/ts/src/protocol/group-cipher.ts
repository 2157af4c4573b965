/**
 * GroupCipher: sender-key encryption and decryption over a SenderKeyStore (the group-layer
 * counterpart of SessionCipher; no I/O beyond the store). sender-keys.ts has the algorithm.
 *
 * Every operation on one record runs under a lock of that record, so concurrent sends or
 * receives never interleave their load/modify/save. Decryption commits nothing until the
 * signature, the AEAD and the content's group binding all checked out; beginDecrypt leaves
 * the commit to the caller, after it stored the message (as SessionCipher). This device's own
 * sending keys are kept in memory too (written through to the store), so a send reads no
 * record: use one GroupCipher per store set, as with SessionCipher.
 */
import type { DeviceRef } from "./address.js";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { ContentSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { SenderKeyDistribution } from "@sealpost/gen/sealpost/envelope/v1/group_pb.js";
import type { SenderKeyMessage } from "@sealpost/gen/sealpost/envelope/v1/shared_body_pb.js";
import { bytesEqual, toHex, wipe } from "../crypto/bytes.js";
import { InvalidMessageError, NoSessionError } from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { SenderKeyStore } from "./stores.js";
import { addressKey } from "./address.js";
import {
  createOwnSenderKey,
  parseSenderKeyBody,
  planSenderKeyDecrypt,
  type SenderKeyDecryptPlan,
  type SenderKeyRecord,
  processSenderKeyDistribution,
  senderKeyDistribution,
  senderKeyEncrypt,
  validateDistribution,
  validateSenderKeyMessage,
  type OwnSenderKey,
} from "./sender-keys.js";
import { KeyedLock } from "../util/keyed-lock.js";

export interface GroupCipherOptions {
  /** Milliseconds since the epoch (injected for tests). */
  now?: () => number;
}

/** A decrypted group message. */
export interface DecryptedGroupMessage {
  groupId: Uint8Array;
  /** Hex of the distribution id the message was sent under. */
  distributionId: string;
  chainId: number;
  iteration: number;
  content: Content;
}

/** A decryption that has not changed any state yet (GroupCipher.beginDecrypt). */
export interface PendingGroupDecryption extends DecryptedGroupMessage {
  /** Saves the advanced chain (the message key is consumed); idempotent. */
  commit(): Promise<void>;
  /** Forgets the result without changing state; a no-op after commit. */
  discard(): void;
}

interface PlannedGroupDecrypt {
  record: SenderKeyRecord;
  plan: SenderKeyDecryptPlan;
  content: Content;
}

export class GroupCipher {
  private readonly locks = new KeyedLock();
  /** Per receiving record ("<sender>/<distribution>"): a stamp changed by every save or removal. */
  private readonly generations = new Map<string, number>();
  private stamps = 0;
  private readonly own = new Map<string, OwnSenderKey>();
  private readonly now: () => number;

  constructor(
    private readonly provider: CryptoProvider,
    private readonly store: SenderKeyStore,
    options: GroupCipherOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  private withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(key, fn);
  }

  private async ownKeyLocked(groupId: Uint8Array): Promise<OwnSenderKey> {
    const id = toHex(groupId);
    let own = this.own.get(id) ?? (await this.store.loadOwn(id));
    if (!own) {
      own = await createOwnSenderKey(this.provider, groupId, this.now());
      await this.store.saveOwn(id, own);
    }
    this.own.set(id, own);
    return own;
  }

  /** The distribution of this device's current sending key (created on first use). */
  distribution(groupId: Uint8Array): Promise<SenderKeyDistribution> {
    return this.withLock(`own/${toHex(groupId)}`, async () => senderKeyDistribution(await this.ownKeyLocked(groupId)));
  }

  /** True when this device has a sending key for the group. */
  async hasOwnKey(groupId: Uint8Array): Promise<boolean> {
    const id = toHex(groupId);
    return this.own.has(id) || (await this.store.loadOwn(id)) !== undefined;
  }

  /**
   * Replaces this device's sending key with a new one (new distribution id, chain and signing
   * key) and returns its distribution: after a member, or a member's device, left.
   */
  rotate(groupId: Uint8Array): Promise<SenderKeyDistribution> {
    return this.withLock(`own/${toHex(groupId)}`, async () => {
      const id = toHex(groupId);
      const old = this.own.get(id) ?? (await this.store.loadOwn(id));
      const own = await createOwnSenderKey(this.provider, groupId, this.now());
      await this.store.saveOwn(id, own);
      this.own.set(id, own);
      if (old) wipe(old.chainKey, old.signingSeed);
      return senderKeyDistribution(own);
    });
  }

  /** Forgets this device's sending key (the group was left). */
  forgetOwn(groupId: Uint8Array): Promise<void> {
    return this.withLock(`own/${toHex(groupId)}`, async () => {
      const id = toHex(groupId);
      const old = this.own.get(id);
      this.own.delete(id);
      await this.store.removeOwn(id);
      if (old) wipe(old.chainKey, old.signingSeed);
    });
  }

  /**
   * Encrypts content for the group; returns the serialized SharedBody for SendRequest.shared_body
   * (with empty per-device entries). The advanced key is saved before returning.
   */
  async encrypt(groupId: Uint8Array, content: Content): Promise<{ sharedBody: Uint8Array; distributionId: string; iteration: number }> {
    const conv = content.conversation?.kind;
    if (conv?.case !== "groupId" || !bytesEqual(conv.value, groupId)) throw new InvalidMessageError("content must name the group as its conversation");
    const plain = toBinary(ContentSchema, content);
    return this.withLock(`own/${toHex(groupId)}`, async () => {
      const own = await this.ownKeyLocked(groupId);
      const iteration = own.iteration;
      const sharedBody = await senderKeyEncrypt(this.provider, own, plain);
      wipe(plain);
      await this.store.saveOwn(toHex(groupId), own);
      return { sharedBody, distributionId: toHex(own.distributionId), iteration };
    });
  }

  /**
   * Records a distribution received from `sender` over its pairwise session. The caller has
   * checked that the sender's account is a member of the group. Returns the distribution id.
   */
  async processDistribution(sender: DeviceRef, d: SenderKeyDistribution): Promise<string> {
    validateDistribution(d);
    const dist = toHex(d.distributionId);
    const who = addressKey(sender);
    return this.withLock(`${who}/${dist}`, async () => {
      const record = processSenderKeyDistribution(await this.store.load(who, dist), d, this.now());
      await this.saveRecord(who, dist, record);
      return dist;
    });
  }

  /** Drops what we hold of one distribution of a sender. */
  forget(sender: DeviceRef, distributionId: string): Promise<void> {
    const who = addressKey(sender);
    return this.withLock(`${who}/${distributionId}`, async () => {
      const r = await this.store.load(who, distributionId);
      if (r) for (const c of r.chains) wipe(c.chainKey, ...c.skipped.map((k) => k.messageKey));
      this.generations.set(`${who}/${distributionId}`, ++this.stamps);
      await this.store.remove(who, distributionId);
    });
  }

  /** The group id of a sender-key body from `sender`, when we hold its distribution. */
  async groupOf(sender: DeviceRef, message: SenderKeyMessage): Promise<Uint8Array | undefined> {
    validateSenderKeyMessage(message);
    return (await this.store.load(addressKey(sender), toHex(message.distributionId)))?.groupId;
  }

  /**
   * Decrypts a group message from `sender` (the device the transport authenticated) and
   * commits the chain at once. Accepts the serialized SharedBody or its parsed
   * SenderKeyMessage. Throws a SealpostCryptoError and changes nothing on failure:
   * NoSessionError when no distribution of that id is held. Callers that store the message
   * should use beginDecrypt, so a failure before it is stored leaves it decryptable again.
   */
  async decrypt(sender: DeviceRef, body: Uint8Array | SenderKeyMessage): Promise<DecryptedGroupMessage> {
    const pending = await this.beginDecrypt(sender, body);
    try {
      await pending.commit();
    } finally {
      pending.discard();
    }
    const { groupId, distributionId, chainId, iteration, content } = pending;
    return { groupId, distributionId, chainId, iteration, content };
  }

  /**
   * Two-step decryption: verifies and decrypts like decrypt() but changes nothing until
   * `commit()`. Store the message durably first, then commit; if storing fails (or the process
   * dies), the same message decrypts again on redelivery and the store dedupes it by
   * message_id. `discard()` forgets an abandoned result (a no-op after commit).
   *
   * The record's lock is not held between the two steps. `commit()` takes it again; when the
   * record changed in between (another message of that chain was committed, a distribution
   * arrived), it plans the decryption again on the current record. Throws a SealpostCryptoError
   * when the message no longer decrypts (e.g. another call committed it).
   */
  async beginDecrypt(sender: DeviceRef, body: Uint8Array | SenderKeyMessage): Promise<PendingGroupDecryption> {
    const message = body instanceof Uint8Array ? parseSenderKeyBody(body) : body;
    if (!message) throw new InvalidMessageError("shared body is not a sender-key message");
    validateSenderKeyMessage(message);
    const who = addressKey(sender);
    const dist = toHex(message.distributionId);
    const key = `${who}/${dist}`;
    const first = await this.withLock(key, async () => ({ generation: this.generations.get(key), planned: await this.plan(who, dist, message) }));
    let current = first.planned;
    let state: "pending" | "committed" | "discarded" = "pending";
    const discard = () => {
      if (state !== "pending") return;
      state = "discarded";
      current.plan.discard();
    };
    const commit = async () => {
      if (state === "committed") return;
      if (state === "discarded") throw new InvalidMessageError("this decryption was discarded");
      await this.withLock(key, async () => {
        if (state !== "pending") return;
        if (this.generations.get(key) !== first.generation) {
          // The record changed since the plan was made: plan again on the current one.
          current.plan.discard();
          current = await this.plan(who, dist, message);
        }
        current.plan.commit();
        await this.saveRecord(who, dist, current.record);
        state = "committed";
      });
    };
    const { record, plan, content } = current;
    return { groupId: record.groupId, distributionId: dist, chainId: plan.chainId, iteration: plan.iteration, content, commit, discard };
  }

  /** Opens and checks a message without changing anything (under the record's lock). */
  private async plan(who: string, dist: string, message: SenderKeyMessage): Promise<PlannedGroupDecrypt> {
    const record = await this.store.load(who, dist);
    if (!record) throw new NoSessionError("no sender key of that distribution from this device");
    const plan = await planSenderKeyDecrypt(this.provider, record, message);
    let content: Content;
    try {
      content = fromBinary(ContentSchema, plan.plaintext);
    } catch {
      plan.discard();
      throw new InvalidMessageError("group content does not parse");
    }
    const conv = content.conversation?.kind;
    if (conv?.case !== "groupId" || !bytesEqual(conv.value, record.groupId)) {
      plan.discard();
      throw new InvalidMessageError("group content names another conversation");
    }
    return { record, plan, content };
  }

  private async saveRecord(who: string, dist: string, record: SenderKeyRecord): Promise<void> {
    this.generations.set(`${who}/${dist}`, ++this.stamps);
    await this.store.save(who, dist, record);
  }
}

/** A Content for a group (its conversation set to the group). */
export function groupContent(groupId: Uint8Array, fields: Omit<MessageInitShape<typeof ContentSchema>, "conversation" | "$typeName">): Content {
  return create(ContentSchema, { ...fields, conversation: { kind: { case: "groupId", value: groupId } } });
}
