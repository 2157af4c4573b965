/**
 * SessionCipher: pairwise sessions with other devices plus per-device fan-out of one sealed
 * body (docs/PROTOCOL.md, "Envelopes"). One message for N devices costs one body
 * encryption and N small ratchet steps.
 *
 * Every operation on a remote device runs under a per-address lock, so concurrent sends and
 * receives never interleave their load/modify/save of that device's session. Decryption
 * commits nothing (session, one-time prekey, channel counters) until the entry authenticated
 * and its payload checked out against the shared body and the addresses; beginDecrypt leaves
 * the commit to the caller, after it stored the message.
 */
import type { DeviceRef } from "./address.js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DeviceAddress } from "@sealpost/gen/sealpost/directory/v1/address_pb.js";
import type { KeyBundle } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { ContentSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { DeviceEnvelopeSchema, EntryPayloadSchema, type EntryPayload } from "@sealpost/gen/sealpost/envelope/v1/device_envelope_pb.js";
import { bytesEqual, constantTimeEqual, wipe } from "../crypto/bytes.js";
import {
  AddressMismatchError,
  BodyMismatchError,
  InvalidMessageError,
  MissingPrekeyError,
  NoSessionError,
  DecryptionError,
  SealpostCryptoError,
  UnsupportedVersionError,
  UntrustedIdentityError,
} from "../crypto/errors.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { GCM_TAG_BYTES, MLKEM768_CIPHERTEXT_BYTES, MLKEM768_PUBLIC_KEY_BYTES } from "../crypto/provider.js";
import { addressKey } from "./address.js";
import {
  decodeCanonicalDeviceEnvelope,
  decodeCanonicalEntryPayload,
  decodeCanonicalTextContent,
  type DeviceEnvelopeFields,
  type PrekeyMessageFields,
  type RatchetMessageFields,
} from "./canonical-decoding.js";
import type { ProtocolStores } from "./stores.js";
import { copyChannelState, emptyChannelState, observeSequence, type ChannelReport } from "./channel.js";
import type { LocalIdentity } from "./identity.js";
import { PQ_RATCHET_VERSION, PROTOCOL_VERSION } from "./labels.js";
import type { PqSchedule } from "./pq-ratchet.js";
import { MAX_INLINE_ENVELOPE_BYTES, MAX_PREVIOUS_SESSIONS } from "./limits.js";
import { pqxdhInitiate, pqxdhRespond } from "./pqxdh.js";
import { verifyKeyBundle, type VerifiedBundle } from "./prekeys.js";
import { canSend, initInitiator, initResponder, planDecrypt, ratchetEncrypt, type DecryptPlan, type RatchetHeader } from "./ratchet.js";
import type { SessionRecord, SessionState } from "./ratchet-state.js";
import { openSealedBody, parseSharedBody, sealBody } from "./sealed-body.js";
import { pad, paddedBuffer, unpad } from "./padding.js";
import {
  deviceEnvelopeSize,
  encodeDeviceEnvelope,
  encodeEntryPayload,
  encodeTextContent,
  entryPayloadSize,
  type EntryFields,
  type PrekeyFields,
  type RatchetFields,
} from "./wire.js";
import { KeyedLock } from "../util/keyed-lock.js";

const EMPTY = new Uint8Array(0);

/** One recipient device of a fan-out; `bundle` starts a session when there is none. */
export interface Recipient {
  address: DeviceRef;
  bundle?: KeyBundle;
}

/** The result of encryptForDevices: what goes into a SendRequest. */
export interface EncryptedMessage {
  messageId: Uint8Array;
  /** Serialized SharedBody (SendRequest.shared_body). */
  sharedBody: Uint8Array;
  /** Serialized DeviceEnvelope per device (SendEntry.entry). */
  entries: { address: DeviceRef; entry: Uint8Array; channelSequence: number }[];
}

/** A decrypted entry and its body. */
export interface DecryptedMessage {
  sender: DeviceRef;
  messageId: Uint8Array;
  /** The content; undefined for sender-key group bodies (the group layer opens those). */
  content?: Content;
  /** The verified entry payload (content key included: keep it secret). */
  payload: EntryPayload;
  channel: ChannelReport;
  /** True when this entry started a new session (a PrekeyMessage). */
  newSession: boolean;
}

export interface SessionCipherOptions {
  /** Milliseconds since the epoch (injected for tests). */
  now?: () => number;
  /**
   * When true, processBundle refuses bundles of devices whose identity was not recorded
   * first (IdentityStore.saveRemoteIdentity from a verified device list). Default false:
   * a first-seen bundle identity is recorded, and the caller is responsible for having
   * checked it against the device list.
   */
  requireKnownIdentity?: boolean;
  /**
   * The version of sessions this device starts: 2 (default; with the post-quantum ratchet) or
   * 1 (classical; only for peers that cannot read version 2, and for the v1 vectors).
   * Sessions others start with us take the version of their PrekeyMessage.
   */
  sessionVersion?: 1 | 2;
  /** When this device makes a new ratchet KEM key (default: pq-ratchet.ts DEFAULT_PQ_SCHEDULE). */
  pqSchedule?: PqSchedule;
}

function sameAddress(a: DeviceAddress | undefined, b: DeviceRef): boolean {
  return a !== undefined && a.accountId === b.accountId && a.deviceId === b.deviceId;
}

/** The header of a RatchetMessage, its fields checked (sizes, and KEM fields in version 2 only). */
function header(m: RatchetMessageFields): RatchetHeader & { version: 1 | 2 } {
  if (m.version !== PROTOCOL_VERSION && m.version !== PQ_RATCHET_VERSION) throw new UnsupportedVersionError(`ratchet message version ${m.version}`);
  if (m.ratchetKey.length !== 32) throw new InvalidMessageError("ratchet key must be 32 bytes");
  const h: RatchetHeader & { version: 1 | 2 } = { version: m.version, ratchetKey: m.ratchetKey, previousCounter: m.previousChainLength, counter: m.counter };
  const hasPublic = m.kemPublicKey.length > 0 || m.kemPublicKeyId !== 0;
  const hasCiphertext = m.kemCiphertext.length > 0 || m.kemCiphertextKeyId !== 0;
  if (m.version === PROTOCOL_VERSION) {
    if (hasPublic || hasCiphertext) throw new InvalidMessageError("KEM fields in a version 1 ratchet message");
    return h;
  }
  if (hasPublic) {
    if (m.kemPublicKey.length !== MLKEM768_PUBLIC_KEY_BYTES || m.kemPublicKeyId === 0)
      throw new InvalidMessageError("kem_public_key must be 1184 bytes with a nonzero id");
    h.kemPublicKey = { id: m.kemPublicKeyId, key: m.kemPublicKey };
  }
  if (hasCiphertext) {
    if (m.kemCiphertext.length !== MLKEM768_CIPHERTEXT_BYTES || m.kemCiphertextKeyId === 0)
      throw new InvalidMessageError("kem_ciphertext must be 1088 bytes with a nonzero key id");
    h.kemCiphertext = { keyId: m.kemCiphertextKeyId, ciphertext: m.kemCiphertext };
  }
  return h;
}

export class SessionCipher {
  private readonly locks = new KeyedLock();
  private readonly generations = new Map<string, number>();
  private local?: LocalIdentity;
  private readonly now: () => number;

  constructor(
    private readonly provider: CryptoProvider,
    private readonly stores: ProtocolStores,
    readonly localAddress: DeviceRef,
    private readonly options: SessionCipherOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  private async localIdentity(): Promise<LocalIdentity> {
    this.local ??= await this.stores.identity.getLocalIdentity();
    if (!this.local) throw new NoSessionError("no local identity in the identity store");
    return this.local;
  }

  /** Runs fn with the lock of one remote device (a promise chain per device). */
  private withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(key, fn);
  }

  /** True when a session exists that can send to `address`. */
  async hasSession(address: DeviceRef): Promise<boolean> {
    const record = await this.stores.sessions.load(addressKey(address));
    return record?.current !== undefined && canSend(record.current);
  }

  /** Verifies a bundle (signatures, sizes, identity trust) without changing anything. */
  private async checkBundle(address: DeviceRef, bundle: KeyBundle): Promise<VerifiedBundle> {
    const known = await this.stores.identity.getRemoteIdentity(addressKey(address));
    const verified = await verifyKeyBundle(this.provider, bundle, known);
    if (known) {
      if (!bytesEqual(known.signingKey, verified.identity.signingKey) || !bytesEqual(known.dhKey, verified.identity.dhKey)) {
        throw new UntrustedIdentityError(`bundle identity of ${addressKey(address)} differs from the recorded one`);
      }
    } else if (this.options.requireKnownIdentity) {
      throw new UntrustedIdentityError(`no recorded identity for ${addressKey(address)}`);
    }
    return verified;
  }

  private async startSession(address: DeviceRef, verified: VerifiedBundle): Promise<SessionRecord> {
    const key = addressKey(address);
    const local = await this.localIdentity();
    if (!(await this.stores.identity.getRemoteIdentity(key))) await this.stores.identity.saveRemoteIdentity(key, verified.identity);
    const init = await pqxdhInitiate(this.provider, local, verified);
    const state = await initInitiator(
      this.provider,
      init.sharedSecret,
      local.dhKey,
      verified.identity.dhKey,
      verified.signedPrekey.publicKey,
      init.baseKey,
      this.now(),
      this.options.sessionVersion ?? PQ_RATCHET_VERSION,
    );
    state.pendingPrekey = {
      signedPrekeyId: init.signedPrekeyId,
      oneTimePrekeyId: init.oneTimePrekeyId,
      kemPrekeyId: init.kemPrekeyId,
      baseKey: init.baseKey,
      kemCiphertext: init.kemCiphertext,
    };
    const record = (await this.stores.sessions.load(key)) ?? { previous: [] };
    archive(record, state);
    await this.saveSession(key, record);
    return record;
  }

  /**
   * Forgets a device that left its account's verified list: its sessions and its recorded
   * identity (so no session with it can start again, and its mail no longer decrypts).
   */
  async forgetDevice(address: DeviceRef): Promise<void> {
    const key = addressKey(address);
    await this.withLock(key, async () => {
      this.generations.set(key, this.generation(key) + 1);
      await this.stores.sessions.remove(key);
      await this.stores.identity.removeRemoteIdentity(key);
    });
  }

  /** Starts a session with a device from its key bundle (rejects bad signatures). */
  async processBundle(address: DeviceRef, bundle: KeyBundle): Promise<void> {
    const verified = await this.checkBundle(address, bundle);
    await this.withLock(addressKey(address), () => this.startSession(address, verified));
  }

  /**
   * Encrypts `content` once and carries its key to every recipient device through the
   * pairwise sessions. Throws NoSessionError (naming every such device) before changing
   * anything when a device has neither a session nor a bundle; bundle signatures are all
   * checked first too.
   */
  async encryptForDevices(content: Content, recipients: Recipient[], options: { messageId?: Uint8Array } = {}): Promise<EncryptedMessage> {
    const local = await this.localIdentity();
    const verified = new Map<string, VerifiedBundle>();
    const missing: string[] = [];
    for (const r of recipients) {
      const key = addressKey(r.address);
      if (await this.hasSession(r.address)) continue;
      if (r.bundle) verified.set(key, await this.checkBundle(r.address, r.bundle));
      else missing.push(key);
    }
    if (missing.length > 0) throw new NoSessionError(`no session and no bundle for ${missing.join(", ")}`);

    const messageId = options.messageId ?? this.provider.random(16);
    if (messageId.length !== 16) throw new InvalidMessageError("message_id must be 16 bytes");
    const padded = serializePaddedContent(content, messageId);
    // One entry: the content rides inside it when it fits, with room to seal the entry for
    // SendSealed (no body: one AEAD and no hash per side). Otherwise one body sealed under a
    // fresh content key for every entry.
    let body: SealedShared | undefined;

    const entries: EncryptedMessage["entries"] = [];
    try {
      if (recipients.length !== 1) body = await sealShared(this.provider, messageId, padded);
      for (const r of recipients) {
        const key = addressKey(r.address);
        const entry = await this.withLock(key, async () => {
          let record = await this.stores.sessions.load(key);
          if (!record?.current || !canSend(record.current)) {
            const v = verified.get(key);
            if (!v) throw new NoSessionError(`no session with ${key}`);
            record = await this.startSession(r.address, v);
          }
          const state = record.current as SessionState;
          const sequence = (await this.stores.channels.loadSent(key)) + 1;
          const p = state.pendingPrekey;
          const prekey: PrekeyFields | undefined = p && {
            version: state.version,
            identityDhKey: local.dhKey,
            baseKey: p.baseKey,
            signedPrekeyId: p.signedPrekeyId,
            oneTimePrekeyId: p.oneTimePrekeyId,
            kemPrekeyId: p.kemPrekeyId,
            kemCiphertext: p.kemCiphertext,
          };
          const fields: EntryFields = {
            sender: this.localAddress,
            recipient: r.address,
            channelSequence: sequence,
            contentKey: EMPTY,
            bodySha256: EMPTY,
            messageId,
          };
          let plain: Uint8Array | undefined;
          let message: Omit<RatchetFields, "ciphertext"> | undefined;
          // The plaintext is built once the header is known (anonymous: tsx names named closures per call).
          const { ciphertext } = await ratchetEncrypt(
            this.provider,
            state,
            async (h: RatchetHeader) => {
              message = ratchetFields(state.version, h);
              if (!body) {
                const inline = { ...fields, content: padded };
                if (deviceEnvelopeSize(message, entryPayloadSize(inline) + GCM_TAG_BYTES, prekey) <= MAX_INLINE_ENVELOPE_BYTES) {
                  return (plain = encodeEntryPayload(inline));
                }
                body = await sealShared(this.provider, messageId, padded);
              }
              return (plain = encodeEntryPayload({ ...fields, contentKey: body.contentKey, bodySha256: body.bodySha256 }));
            },
            { nowMs: this.now(), pqSchedule: this.options.pqSchedule },
          );
          if (plain) wipe(plain);
          const envelope = encodeDeviceEnvelope({ ...message!, ciphertext }, prekey);
          await this.saveSession(key, record);
          await this.stores.channels.saveSent(key, sequence);
          return { address: r.address, entry: envelope, channelSequence: sequence };
        });
        entries.push(entry);
      }
    } finally {
      wipe(padded);
      if (body) wipe(body.contentKey);
    }
    return { messageId, sharedBody: body?.sharedBody ?? new Uint8Array(0), entries };
  }

  /**
   * Decrypts one device entry and the shared body it belongs to, and commits the state change
   * at once. `sender` is the sending device as the transport reported it; the entry must name
   * the same device, and this device as recipient. Throws a SealpostCryptoError and changes
   * nothing on any failure. Callers that store the result should use beginDecrypt instead, so
   * a failure before the result is stored leaves the entry decryptable again.
   */
  async decrypt(entry: Uint8Array, sharedBody: Uint8Array, sender: DeviceRef): Promise<DecryptedMessage> {
    const pending = await this.beginDecrypt(entry, sharedBody, sender);
    try {
      await pending.commit();
    } finally {
      pending.discard();
    }
    const { sender: from, messageId, content, payload, channel, newSession } = pending;
    return { sender: from, messageId, content, payload, channel, newSession };
  }

  /**
   * Two-step decryption: verifies and decrypts like decrypt() but changes no state (session,
   * one-time prekey, channel counters) until `commit()`. Store the result durably first, then
   * commit; if storing fails (or the process dies), the same entry decrypts again on
   * redelivery and the store dedupes it by message_id. `discard()` forgets an abandoned result
   * (wipes its keys; a no-op after commit).
   *
   * The per-address lock is not held between the two steps (a handler may send to the same
   * device meanwhile). `commit()` takes the lock again; if the device's session changed in
   * between (another send or receive), it re-plans the decryption on the current state, which
   * linearizes this receive after that operation. Throws a SealpostCryptoError if the entry no
   * longer decrypts (e.g. it was committed by another call).
   */
  async beginDecrypt(entry: Uint8Array, sharedBody: Uint8Array, sender: DeviceRef): Promise<PendingDecryption> {
    const envelope = parseDeviceEnvelope(entry);
    const key = addressKey(sender);
    const local = await this.localIdentity();
    const planned = await this.withLock(key, async () => {
      const generation = this.generation(key);
      const p = await this.plan(envelope, sharedBody, sender, key, local);
      const channelState = (await this.stores.channels.loadReceived(key)) ?? emptyChannelState();
      // A preview on a copy: the counters change at commit.
      const channel = observeSequence(copyChannelState(channelState), Number(p.result.payload.channelSequence));
      return { p, generation, channel };
    });
    let state: "pending" | "committed" | "discarded" = "pending";
    let current = planned.p;
    // Methods, not named arrow functions: tsx names named closures per call. Neither uses `this`.
    const cipher = this;
    return {
      ...planned.p.result,
      newSession: planned.p.opened.newSession,
      channel: planned.channel,
      async commit() {
        if (state === "committed") return;
        if (state === "discarded") throw new InvalidMessageError("this decryption was discarded");
        await cipher.withLock(key, async () => {
          if (state !== "pending") return;
          if (cipher.generation(key) !== planned.generation) {
            // The session changed since the plan was made: plan again on the current state.
            current.opened.plan.discard();
            current = await cipher.plan(envelope, sharedBody, sender, key, local);
          }
          await cipher.apply(key, current);
          state = "committed";
        });
      },
      discard() {
        if (state !== "pending") return;
        state = "discarded";
        current.opened.plan.discard();
      },
    };
  }

  /** The number of session saves for `key` so far (this instance): a plan is valid while it is unchanged. */
  private generation(key: string): number {
    return this.generations.get(key) ?? 0;
  }

  private async saveSession(key: string, record: SessionRecord): Promise<void> {
    this.generations.set(key, this.generation(key) + 1);
    await this.stores.sessions.save(key, record);
  }

  /** Opens and checks an entry without changing anything (run under the address lock). */
  private async plan(envelope: DeviceEnvelopeFields, sharedBody: Uint8Array, sender: DeviceRef, key: string, local: LocalIdentity): Promise<Planned> {
    const record = (await this.stores.sessions.load(key)) ?? { previous: [] };
    let opened: Opened;
    if (envelope.case === "ratchet") opened = await this.openRatchet(record, envelope.value);
    else opened = await this.openPrekey(record, envelope.value, key, local);
    try {
      return { record, opened, result: await this.checkPayload(opened.plan.plaintext, sharedBody, sender) };
    } catch (e) {
      opened.plan.discard();
      throw e;
    }
  }

  /** Applies a plan: session, consumed one-time prekey, channel counters (under the address lock). */
  private async apply(key: string, { record, opened, result }: Planned): Promise<void> {
    const wasConfirmed = opened.state.receivingChainKey !== undefined;
    opened.plan.commit();
    if (!wasConfirmed) maybePromote(record, opened.state);
    await this.saveSession(key, record);
    if (opened.consumedOneTimePrekey !== undefined) await this.stores.oneTimePrekeys.remove(opened.consumedOneTimePrekey);
    const channelState = (await this.stores.channels.loadReceived(key)) ?? emptyChannelState();
    observeSequence(channelState, Number(result.payload.channelSequence));
    await this.stores.channels.saveReceived(key, channelState);
  }

  /** Tries the current state, then the previous ones (simultaneous initiation, late mail). */
  private async openRatchet(record: SessionRecord, message: RatchetMessageFields): Promise<Opened> {
    const h = header(message);
    const states = record.current ? [record.current, ...record.previous] : record.previous;
    if (states.length === 0) throw new NoSessionError("no session with the sender");
    let first: unknown;
    for (const state of states) {
      try {
        if (state.version !== h.version) throw new DecryptionError(`a version ${h.version} message for a version ${state.version} session`);
        return { plan: await planDecrypt(this.provider, state, h, message.ciphertext, this.now()), state, newSession: false };
      } catch (e) {
        if (!(e instanceof SealpostCryptoError)) throw e;
        first ??= e;
      }
    }
    throw first;
  }

  private async openPrekey(record: SessionRecord, m: PrekeyMessageFields, key: string, local: LocalIdentity): Promise<Opened> {
    if (m.version !== PROTOCOL_VERSION && m.version !== PQ_RATCHET_VERSION) throw new UnsupportedVersionError(`prekey message version ${m.version}`);
    if (m.message.version !== m.version)
      throw new InvalidMessageError(`a version ${m.version} prekey message around a version ${m.message.version} ratchet message`);
    if (m.identityDhKey.length !== 32 || m.baseKey.length !== 32) throw new InvalidMessageError("prekey message keys must be 32 bytes");
    if (m.kemCiphertext.length !== MLKEM768_CIPHERTEXT_BYTES) throw new InvalidMessageError("KEM ciphertext must be 1088 bytes");
    const known = await this.stores.identity.getRemoteIdentity(key);
    if (!known) throw new UntrustedIdentityError(`no recorded identity for ${key}; verify its device list first`);
    if (!constantTimeEqual(known.dhKey, m.identityDhKey)) throw new UntrustedIdentityError(`identity key of ${key} differs from its device list`);

    // A session this base key already made: a retransmission or replay of the first messages.
    const states = record.current ? [record.current, ...record.previous] : record.previous;
    const existing = states.filter((s) => !s.initiator && bytesEqual(s.baseKey, m.baseKey));
    if (existing.length > 0) {
      return this.openRatchet({ current: existing[0], previous: existing.slice(1) }, m.message);
    }

    const h = header(m.message);
    const spk = await this.stores.signedPrekeys.load(m.signedPrekeyId);
    if (!spk) throw new MissingPrekeyError(`signed prekey ${m.signedPrekeyId} not found`);
    const kem = await this.stores.kemPrekeys.load(m.kemPrekeyId);
    if (!kem) throw new MissingPrekeyError(`KEM prekey ${m.kemPrekeyId} not found`);
    let otpPrivate: Uint8Array | undefined;
    if (m.oneTimePrekeyId !== undefined) {
      const otp = await this.stores.oneTimePrekeys.load(m.oneTimePrekeyId);
      if (!otp) throw new MissingPrekeyError(`one-time prekey ${m.oneTimePrekeyId} not found (already used?)`);
      otpPrivate = otp.privateKey;
    }
    const sk = await pqxdhRespond(this.provider, local, m.identityDhKey, m.baseKey, spk.privateKey, otpPrivate, kem.secretKey, m.kemCiphertext);
    const state = initResponder(sk, local.dhKey, m.identityDhKey, spk.privateKey, spk.publicKey, m.baseKey.slice(), this.now(), h.version);
    const plan = await planDecrypt(this.provider, state, h, m.message.ciphertext, this.now());
    const commit = plan.commit;
    return {
      plan: {
        plaintext: plan.plaintext,
        discard: plan.discard,
        commit() {
          commit();
          archive(record, state);
        },
      },
      state,
      newSession: true,
      consumedOneTimePrekey: m.oneTimePrekeyId,
    };
  }

  private async checkPayload(plaintext: Uint8Array, sharedBody: Uint8Array, sender: DeviceRef): Promise<Omit<DecryptedMessage, "channel" | "newSession">> {
    let payload = decodeCanonicalEntryPayload(plaintext);
    if (!payload) {
      try {
        payload = fromBinary(EntryPayloadSchema, plaintext);
      } catch {
        throw new InvalidMessageError("entry payload does not parse");
      }
    }
    if (!sameAddress(payload.sender, sender)) throw new AddressMismatchError("entry was sent by a different device than the transport reported");
    if (!sameAddress(payload.recipient, this.localAddress)) throw new AddressMismatchError("entry is addressed to a different device");
    if (payload.messageId.length !== 16) throw new InvalidMessageError("message_id must be 16 bytes");
    if (payload.channelSequence < 1n || payload.channelSequence > BigInt(Number.MAX_SAFE_INTEGER))
      throw new InvalidMessageError("channel_sequence out of range");
    let content: Content | undefined;
    if (payload.content.length > 0) {
      // Inline content: the entry is the whole message.
      if (payload.contentKey.length > 0 || payload.bodySha256.length > 0)
        throw new InvalidMessageError("an entry with inline content carries no content key or body hash");
      if (sharedBody.length > 0) throw new BodyMismatchError("an entry with inline content comes with an empty shared body");
      let bytes: Uint8Array;
      try {
        bytes = unpad(payload.content);
      } catch {
        throw new InvalidMessageError("inline content padding is malformed");
      }
      content = parseContent(bytes, payload.messageId);
    } else {
      if (!constantTimeEqual(await this.provider.sha256Async(sharedBody), payload.bodySha256))
        throw new BodyMismatchError("shared body does not match body_sha256");
      const body = parseSharedBody(sharedBody);
      if (body.kind.case === "sealed") {
        content = parseContent(await openSealedBody(this.provider, payload.contentKey, payload.messageId, body.kind.value), payload.messageId);
      } else if (body.kind.case !== "senderKey") {
        throw new InvalidMessageError("shared body is empty");
      }
    }
    return { sender: { accountId: sender.accountId, deviceId: sender.deviceId }, messageId: payload.messageId, content, payload };
  }
}

/** Serialized Content (padding removed) whose message_id, if set, must be the entry's. */
function parseContent(bytes: Uint8Array, messageId: Uint8Array): Content {
  let content = decodeCanonicalTextContent(bytes);
  if (!content) {
    try {
      content = fromBinary(ContentSchema, bytes);
    } catch {
      throw new InvalidMessageError("content does not parse");
    }
  }
  if (content.messageId.length > 0 && !bytesEqual(content.messageId, messageId)) {
    throw new BodyMismatchError("content message_id differs from the entry's");
  }
  return content;
}

/** A SharedBody sealed under a fresh content key, and what each entry needs to open it. */
interface SealedShared {
  sharedBody: Uint8Array;
  contentKey: Uint8Array;
  bodySha256: Uint8Array;
}

/** Seals the padded content (and wipes it). */
async function sealShared(provider: CryptoProvider, messageId: Uint8Array, padded: Uint8Array): Promise<SealedShared> {
  const contentKey = provider.random(32);
  const sharedBody = await sealBody(provider, contentKey, messageId, padded);
  return { sharedBody, contentKey, bodySha256: await provider.sha256Async(sharedBody) };
}

/** The RatchetMessage fields of a header, without the ciphertext. */
function ratchetFields(version: 1 | 2, h: RatchetHeader): Omit<RatchetFields, "ciphertext"> {
  return {
    version,
    ratchetKey: h.ratchetKey,
    previousChainLength: h.previousCounter,
    counter: h.counter,
    kemPublicKey: h.kemPublicKey?.key,
    kemPublicKeyId: h.kemPublicKey?.id,
    kemCiphertext: h.kemCiphertext?.ciphertext,
    kemCiphertextKeyId: h.kemCiphertext?.keyId,
  };
}

/**
 * Parses a DeviceEnvelope and insists on its canonical encoding (the bytes our encoder would
 * write: fields in number order, defaults omitted, nothing unknown, a prekey message with its
 * ratchet message). protobuf parsers accept re-encodings (e.g. a message field as a group);
 * refusing them makes entries unmalleable.
 */
function parseDeviceEnvelope(entry: Uint8Array): DeviceEnvelopeFields {
  const envelope = decodeCanonicalDeviceEnvelope(entry);
  if (envelope) return envelope;
  // Only the error message needs to know whether the bytes are protobuf at all.
  try {
    fromBinary(DeviceEnvelopeSchema, entry);
  } catch {
    throw new InvalidMessageError("device envelope does not parse");
  }
  throw new InvalidMessageError("device envelope is not canonically encoded");
}

/**
 * Serialized Content with message_id set, padded (padding.ts). When message_id is empty,
 * prepending field 1 to protobuf-es's canonical encoding gives exactly the canonical
 * encoding with the field set (field 1 comes first), without copying the message.
 */
function serializePaddedContent(content: Content, messageId: Uint8Array): Uint8Array {
  const text = encodeTextContent(content, messageId, true);
  if (text) return text;
  const bytes = toBinary(ContentSchema, content);
  if (content.messageId.length > 0) return pad(bytes);
  const out = paddedBuffer(2 + messageId.length + bytes.length);
  out[0] = 0x0a; // field 1, length-delimited
  out[1] = messageId.length;
  out.set(messageId, 2);
  out.set(bytes, 2 + messageId.length);
  return out;
}

/** A decryption that has not changed any state yet (SessionCipher.beginDecrypt). */
export interface PendingDecryption extends DecryptedMessage {
  /** Applies the state change (session, one-time prekey, channel counters); idempotent. */
  commit(): Promise<void>;
  /** Forgets the result without changing state; a no-op after commit. */
  discard(): void;
}

interface Planned {
  record: SessionRecord;
  opened: Opened;
  result: Omit<DecryptedMessage, "channel" | "newSession">;
}

interface Opened {
  plan: DecryptPlan;
  state: SessionState;
  newSession: boolean;
  consumedOneTimePrekey?: number;
}

/** Makes `state` current, keeping the previous current among the previous states. */
function archive(record: SessionRecord, state: SessionState): void {
  if (record.current) record.previous.unshift(record.current);
  record.current = state;
  trim(record);
}

/**
 * Convergence rule (simultaneous initiation). Both devices started a session (S_A by A, S_B
 * by B); each receives the other's PrekeyMessage, which makes the new responder state
 * current, so A sends on S_B and B on S_A. When a previous state receives its first answer
 * (it was unconfirmed: no receiving chain yet) while the current one is confirmed, the state
 * with the lexicographically smaller base key wins. Both sides compare the same two base keys,
 * so both end on the same session after one exchange; messages on the other one still decrypt
 * from the previous states. (libsignal promotes whichever state decrypted last, which can
 * oscillate while both sides keep sending at once.) Late mail on an older confirmed session
 * never demotes the current one.
 */
function maybePromote(record: SessionRecord, state: SessionState): void {
  const current = record.current;
  if (!current || current === state || current.receivingChainKey === undefined) return;
  if (compareBytes(state.baseKey, current.baseKey) >= 0) return;
  const at = record.previous.indexOf(state);
  if (at < 0) return;
  record.previous.splice(at, 1);
  record.previous.unshift(current);
  record.current = state;
  trim(record);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function trim(record: SessionRecord): void {
  if (record.previous.length > MAX_PREVIOUS_SESSIONS) record.previous.length = MAX_PREVIOUS_SESSIONS;
}
