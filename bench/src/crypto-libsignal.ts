/**
 * The reference side of bench/src/crypto-bench.ts: `@signalapp/libsignal-client` (Signal's
 * Rust core over N-API) with in-memory stores over its abstract store classes.
 */
import * as Signal from "@signalapp/libsignal-client";

class Sessions extends Signal.SessionStore {
  readonly map = new Map<string, Signal.SessionRecord>();
  async saveSession(name: Signal.ProtocolAddress, record: Signal.SessionRecord) {
    this.map.set(name.toString(), record);
  }
  async getSession(name: Signal.ProtocolAddress) {
    return this.map.get(name.toString()) ?? null;
  }
  async getExistingSessions(addresses: Signal.ProtocolAddress[]) {
    return addresses.map((a) => {
      const r = this.map.get(a.toString());
      if (!r) throw new Error(`no session for ${a.toString()}`);
      return r;
    });
  }
}

class Identities extends Signal.IdentityKeyStore {
  readonly map = new Map<string, Signal.PublicKey>();
  constructor(
    private readonly key: Signal.PrivateKey,
    private readonly registrationId: number,
  ) {
    super();
  }
  async getIdentityKey() {
    return this.key;
  }
  async getLocalRegistrationId() {
    return this.registrationId;
  }
  async saveIdentity(name: Signal.ProtocolAddress, key: Signal.PublicKey) {
    const old = this.map.get(name.toString());
    this.map.set(name.toString(), key);
    return old && !old.equals(key) ? Signal.IdentityChange.ReplacedExisting : Signal.IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity() {
    return true;
  }
  async getIdentity(name: Signal.ProtocolAddress) {
    return this.map.get(name.toString()) ?? null;
  }
}

class PreKeys extends Signal.PreKeyStore {
  readonly map = new Map<number, Signal.PreKeyRecord>();
  async savePreKey(id: number, record: Signal.PreKeyRecord) {
    this.map.set(id, record);
  }
  async getPreKey(id: number) {
    const r = this.map.get(id);
    if (!r) throw new Error("no prekey");
    return r;
  }
  async removePreKey(id: number) {
    this.map.delete(id);
  }
}

class SignedPreKeys extends Signal.SignedPreKeyStore {
  readonly map = new Map<number, Signal.SignedPreKeyRecord>();
  async saveSignedPreKey(id: number, record: Signal.SignedPreKeyRecord) {
    this.map.set(id, record);
  }
  async getSignedPreKey(id: number) {
    const r = this.map.get(id);
    if (!r) throw new Error("no signed prekey");
    return r;
  }
}

class KyberPreKeys extends Signal.KyberPreKeyStore {
  readonly map = new Map<number, Signal.KyberPreKeyRecord>();
  async saveKyberPreKey(id: number, record: Signal.KyberPreKeyRecord) {
    this.map.set(id, record);
  }
  async getKyberPreKey(id: number) {
    const r = this.map.get(id);
    if (!r) throw new Error("no kyber prekey");
    return r;
  }
  async markKyberPreKeyUsed() {}
}

class SenderKeys extends Signal.SenderKeyStore {
  readonly map = new Map<string, Signal.SenderKeyRecord>();
  async saveSenderKey(sender: Signal.ProtocolAddress, distributionId: string, record: Signal.SenderKeyRecord) {
    this.map.set(`${sender.toString()}/${distributionId}`, record);
  }
  async getSenderKey(sender: Signal.ProtocolAddress, distributionId: string) {
    return this.map.get(`${sender.toString()}/${distributionId}`) ?? null;
  }
}

/** One libsignal device with its stores. */
export class LibsignalDevice {
  readonly address: Signal.ProtocolAddress;
  readonly identityKey = Signal.PrivateKey.generate();
  readonly registrationId: number;
  readonly sessions = new Sessions();
  readonly identities: Identities;
  readonly preKeys = new PreKeys();
  readonly signedPreKeys = new SignedPreKeys();
  readonly kyberPreKeys = new KyberPreKeys();
  readonly senderKeys = new SenderKeys();
  private nextPreKeyId = 1;
  private readonly signedPreKey: Signal.SignedPreKeyRecord;
  private readonly kyberPreKey: Signal.KyberPreKeyRecord;

  constructor(name: string, deviceId: number) {
    this.address = Signal.ProtocolAddress.new(name, deviceId);
    this.registrationId = 1 + deviceId;
    this.identities = new Identities(this.identityKey, this.registrationId);
    const spk = Signal.PrivateKey.generate();
    this.signedPreKey = Signal.SignedPreKeyRecord.new(1, Date.now(), spk.getPublicKey(), spk, this.identityKey.sign(spk.getPublicKey().serialize()));
    void this.signedPreKeys.saveSignedPreKey(1, this.signedPreKey);
    const kem = Signal.KEMKeyPair.generate();
    this.kyberPreKey = Signal.KyberPreKeyRecord.new(1, Date.now(), kem, this.identityKey.sign(kem.getPublicKey().serialize()));
    void this.kyberPreKeys.saveKyberPreKey(1, this.kyberPreKey);
  }

  /** A bundle with a fresh one-time prekey (its generation is not part of any timed figure). */
  bundle(): Signal.PreKeyBundle {
    const id = this.nextPreKeyId++;
    const pk = Signal.PrivateKey.generate();
    void this.preKeys.savePreKey(id, Signal.PreKeyRecord.new(id, pk.getPublicKey(), pk));
    return Signal.PreKeyBundle.new(
      this.registrationId,
      this.address.deviceId(),
      id,
      pk.getPublicKey(),
      1,
      this.signedPreKey.publicKey(),
      this.signedPreKey.signature(),
      this.identityKey.getPublicKey(),
      1,
      this.kyberPreKey.publicKey(),
      this.kyberPreKey.signature(),
    );
  }

  processBundle(peer: LibsignalDevice, bundle: Signal.PreKeyBundle): Promise<void> {
    return Signal.processPreKeyBundle(bundle, peer.address, this.address, this.sessions, this.identities);
  }

  encrypt(peer: LibsignalDevice, plaintext: Uint8Array<ArrayBuffer>): Promise<Signal.CiphertextMessage> {
    return Signal.signalEncrypt(plaintext, peer.address, this.address, this.sessions, this.identities);
  }

  async decrypt(peer: LibsignalDevice, message: Signal.CiphertextMessage): Promise<Uint8Array> {
    const bytes = message.serialize();
    if (message.type() === Signal.CiphertextMessageType.PreKey) {
      return Signal.signalDecryptPreKey(
        Signal.PreKeySignalMessage.deserialize(bytes),
        peer.address,
        this.address,
        this.sessions,
        this.identities,
        this.preKeys,
        this.signedPreKeys,
        this.kyberPreKeys,
      );
    }
    return Signal.signalDecrypt(Signal.SignalMessage.deserialize(bytes), peer.address, this.address, this.sessions, this.identities);
  }

  /** Sender-key distribution for group figures. */
  createDistribution(distributionId: string): Promise<Signal.SenderKeyDistributionMessage> {
    return Signal.SenderKeyDistributionMessage.create(this.address, distributionId, this.senderKeys);
  }

  processDistribution(sender: LibsignalDevice, message: Signal.SenderKeyDistributionMessage): Promise<void> {
    return Signal.processSenderKeyDistributionMessage(sender.address, message, this.senderKeys);
  }

  groupEncrypt(distributionId: string, plaintext: Uint8Array<ArrayBuffer>): Promise<Signal.CiphertextMessage> {
    return Signal.groupEncrypt(this.address, distributionId, this.senderKeys, plaintext);
  }

  groupDecrypt(sender: LibsignalDevice, ciphertext: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
    return Signal.groupDecrypt(sender.address, this.senderKeys, ciphertext);
  }
}

/** Bytes of SPQR (libsignal's sparse post-quantum ratchet) data a non-prekey message carries. */
export function spqrBytes(message: Signal.CiphertextMessage): number {
  if (message.type() !== Signal.CiphertextMessageType.Whisper) return 0;
  return Signal.SignalMessage.deserialize(message.serialize()).pqRatchet().length;
}
