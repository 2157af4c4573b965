/** In-memory group stores: tests, benchmarks, clients that keep nothing across restarts. */
import type { OwnSenderKey, SenderKeyRecord } from "../protocol/sender-keys.js";
import type { GroupPendingItem, GroupPendingStore, GroupRecord, GroupStateStore, GroupStores, SenderKeyStore } from "./group-interfaces.js";

export class MemorySenderKeyStore implements SenderKeyStore {
  private readonly records = new Map<string, SenderKeyRecord>();
  private readonly own = new Map<string, OwnSenderKey>();
  async load(sender: string, distributionId: string) {
    return this.records.get(`${sender}/${distributionId}`);
  }
  async save(sender: string, distributionId: string, record: SenderKeyRecord) {
    this.records.set(`${sender}/${distributionId}`, record);
  }
  async remove(sender: string, distributionId: string) {
    this.records.delete(`${sender}/${distributionId}`);
  }
  async loadOwn(groupId: string) {
    return this.own.get(groupId);
  }
  async saveOwn(groupId: string, key: OwnSenderKey) {
    this.own.set(groupId, key);
  }
  async removeOwn(groupId: string) {
    this.own.delete(groupId);
  }
}

export class MemoryGroupStateStore implements GroupStateStore {
  private readonly records = new Map<string, GroupRecord>();
  async load(groupId: string) {
    return this.records.get(groupId);
  }
  async save(groupId: string, record: GroupRecord) {
    this.records.set(groupId, record);
  }
  async remove(groupId: string) {
    this.records.delete(groupId);
  }
  async ids() {
    return [...this.records.keys()].sort();
  }
}

export class MemoryGroupPendingStore implements GroupPendingStore {
  private readonly items = new Map<number, GroupPendingItem>();
  async list() {
    return [...this.items.values()].sort((a, b) => a.id - b.id);
  }
  async put(item: GroupPendingItem) {
    this.items.set(item.id, item);
  }
  async remove(id: number) {
    this.items.delete(id);
  }
}

export function createMemoryGroupStores(): GroupStores {
  return { senderKeys: new MemorySenderKeyStore(), groups: new MemoryGroupStateStore(), pending: new MemoryGroupPendingStore() };
}
