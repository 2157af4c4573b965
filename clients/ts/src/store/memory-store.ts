/** In-memory stores: tests, benchmarks, and clients that keep nothing across restarts. */
import { bytesEqual } from "../crypto/bytes.js";
import type { LocalIdentity, RemoteIdentity } from "../protocol/identity.js";
import type { SessionRecord } from "../protocol/ratchet-state.js";
import type { ChannelReceiveState } from "../protocol/channel.js";
import type { ChannelStore, IdentityChange, IdentityStore, KeyRecordStore, ProtocolStores, SessionStore } from "../protocol/stores.js";

export class MemoryIdentityStore implements IdentityStore {
  private local?: LocalIdentity;
  private readonly remote = new Map<string, RemoteIdentity>();
  async getLocalIdentity() {
    return this.local;
  }
  async setLocalIdentity(identity: LocalIdentity) {
    this.local = identity;
  }
  async getRemoteIdentity(address: string) {
    return this.remote.get(address);
  }
  async saveRemoteIdentity(address: string, identity: RemoteIdentity): Promise<IdentityChange> {
    const old = this.remote.get(address);
    this.remote.set(address, identity);
    if (!old) return "new";
    return bytesEqual(old.signingKey, identity.signingKey) && bytesEqual(old.dhKey, identity.dhKey) ? "unchanged" : "changed";
  }
  async removeRemoteIdentity(address: string) {
    this.remote.delete(address);
  }
}

export class MemoryKeyRecordStore<R> implements KeyRecordStore<R> {
  private readonly records = new Map<number, R>();
  async load(keyId: number) {
    return this.records.get(keyId);
  }
  async save(keyId: number, record: R) {
    this.records.set(keyId, record);
  }
  async remove(keyId: number) {
    this.records.delete(keyId);
  }
  async ids() {
    return [...this.records.keys()].sort((a, b) => a - b);
  }
}

export class MemorySessionStore implements SessionStore {
  private readonly records = new Map<string, SessionRecord>();
  async load(address: string) {
    return this.records.get(address);
  }
  async save(address: string, record: SessionRecord) {
    this.records.set(address, record);
  }
  async remove(address: string) {
    this.records.delete(address);
  }
}

export class MemoryChannelStore implements ChannelStore {
  private readonly sent = new Map<string, number>();
  private readonly received = new Map<string, ChannelReceiveState>();
  async loadSent(address: string) {
    return this.sent.get(address) ?? 0;
  }
  async saveSent(address: string, sequence: number) {
    this.sent.set(address, sequence);
  }
  async loadReceived(address: string) {
    return this.received.get(address);
  }
  async saveReceived(address: string, state: ChannelReceiveState) {
    this.received.set(address, state);
  }
}

/** A full set of in-memory stores. */
export function createMemoryStores(): ProtocolStores {
  return {
    identity: new MemoryIdentityStore(),
    oneTimePrekeys: new MemoryKeyRecordStore(),
    signedPrekeys: new MemoryKeyRecordStore(),
    kemPrekeys: new MemoryKeyRecordStore(),
    sessions: new MemorySessionStore(),
    channels: new MemoryChannelStore(),
  };
}
