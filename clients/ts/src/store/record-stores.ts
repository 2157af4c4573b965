/**
 * The protocol stores (identity, prekeys, sessions, channels) over record spaces: one record
 * per key, replaced whole. The same classes are the durable file stores on Node (file-store.ts)
 * and the IndexedDB stores in a browser (indexeddb-space.ts), with the same layout:
 *
 *   <root>/identity/local, identity/remote/<address>
 *   <root>/one-time-prekeys/<id>, signed-prekeys/<id>, kem-prekeys/<id>
 *   <root>/sessions/<address>, channels/sent/<address>, channels/received/<address>
 */
import { bytesEqual } from "../crypto/bytes.js";
import type { LocalIdentity, RemoteIdentity } from "../protocol/identity.js";
import type { SessionRecord } from "../protocol/ratchet-state.js";
import type { ChannelReceiveState } from "../protocol/channel.js";
import type { ChannelStore, IdentityChange, IdentityStore, KeyRecordStore, ProtocolStores, SessionStore } from "../protocol/stores.js";
import { joinPath, type OpenSpace, type RecordSpace } from "./record-space.js";

export class RecordIdentityStore implements IdentityStore {
  private readonly local: RecordSpace;
  private readonly remote: RecordSpace;
  constructor(root: string, open: OpenSpace) {
    this.local = open(joinPath(root, "identity"));
    this.remote = open(joinPath(root, "identity", "remote"));
  }
  getLocalIdentity() {
    return this.local.read<LocalIdentity>("local");
  }
  setLocalIdentity(identity: LocalIdentity) {
    return this.local.write("local", identity);
  }
  getRemoteIdentity(address: string) {
    return this.remote.read<RemoteIdentity>(address);
  }
  async saveRemoteIdentity(address: string, identity: RemoteIdentity): Promise<IdentityChange> {
    const old = await this.remote.read<RemoteIdentity>(address);
    await this.remote.write(address, identity);
    if (!old) return "new";
    return bytesEqual(old.signingKey, identity.signingKey) && bytesEqual(old.dhKey, identity.dhKey) ? "unchanged" : "changed";
  }
  removeRemoteIdentity(address: string) {
    return this.remote.remove(address);
  }
}

export class RecordKeyStore<R> implements KeyRecordStore<R> {
  private readonly records: RecordSpace;
  constructor(dir: string, open: OpenSpace) {
    this.records = open(dir);
  }
  load(keyId: number) {
    return this.records.read<R>(String(keyId));
  }
  save(keyId: number, record: R) {
    return this.records.write(String(keyId), record);
  }
  remove(keyId: number) {
    return this.records.remove(String(keyId));
  }
  async ids() {
    return (await this.records.names())
      .map(Number)
      .filter(Number.isInteger)
      .sort((a, b) => a - b);
  }
}

export class RecordSessionStore implements SessionStore {
  private readonly records: RecordSpace;
  constructor(dir: string, open: OpenSpace) {
    this.records = open(dir);
  }
  load(address: string) {
    return this.records.read<SessionRecord>(address);
  }
  save(address: string, record: SessionRecord) {
    return this.records.write(address, record);
  }
  remove(address: string) {
    return this.records.remove(address);
  }
}

export class RecordChannelStore implements ChannelStore {
  private readonly sent: RecordSpace;
  private readonly received: RecordSpace;
  constructor(root: string, open: OpenSpace) {
    this.sent = open(joinPath(root, "sent"));
    this.received = open(joinPath(root, "received"));
  }
  async loadSent(address: string) {
    return (await this.sent.read<{ sequence: number }>(address))?.sequence ?? 0;
  }
  saveSent(address: string, sequence: number) {
    return this.sent.write(address, { sequence });
  }
  loadReceived(address: string) {
    return this.received.read<ChannelReceiveState>(address);
  }
  saveReceived(address: string, state: ChannelReceiveState) {
    return this.received.write(address, state);
  }
}

/** A full set of protocol stores under `root`, in the spaces `open` gives. */
export function createRecordStores(root: string, open: OpenSpace): ProtocolStores {
  return {
    identity: new RecordIdentityStore(root, open),
    oneTimePrekeys: new RecordKeyStore(joinPath(root, "one-time-prekeys"), open),
    signedPrekeys: new RecordKeyStore(joinPath(root, "signed-prekeys"), open),
    kemPrekeys: new RecordKeyStore(joinPath(root, "kem-prekeys"), open),
    sessions: new RecordSessionStore(joinPath(root, "sessions"), open),
    channels: new RecordChannelStore(joinPath(root, "channels"), open),
  };
}
