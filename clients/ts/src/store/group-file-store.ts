/**
 * Durable group stores: one JSON record per file, atomically replaced (RecordDirectory of
 * file-store.ts), mode 0600 (sender keys are secrets).
 *
 *   <root>/sender-keys/<sender address>/<distribution id>.json
 *   <root>/sender-keys-own/<group id>.json
 *   <root>/groups/<group id>.json
 *   <root>/groups-pending/<id>.json   (one waiting item each)
 *   <root>/groups-outbox/<seq>.json
 */
import * as path from "node:path";
import type { OwnSenderKey, SenderKeyRecord } from "../protocol/sender-keys.js";
import { RecordDirectory, type FileStoreOptions } from "./file-store.js";
import type { GroupOutboxItem, GroupOutboxStore, GroupPendingItem, GroupPendingSnapshot, GroupPendingStore, GroupRecord, GroupStateStore, GroupStores, SenderKeyStore } from "./group-interfaces.js";

export class FileSenderKeyStore implements SenderKeyStore {
  private readonly dirs = new Map<string, RecordDirectory>();
  private readonly own: RecordDirectory;
  constructor(
    private readonly root: string,
    private readonly options?: FileStoreOptions,
  ) {
    this.own = new RecordDirectory(path.join(root, "sender-keys-own"), options);
  }
  private dir(sender: string): RecordDirectory {
    let d = this.dirs.get(sender);
    if (!d) {
      d = new RecordDirectory(path.join(this.root, "sender-keys", encodeURIComponent(sender)), this.options);
      this.dirs.set(sender, d);
    }
    return d;
  }
  load(sender: string, distributionId: string) {
    return this.dir(sender).read<SenderKeyRecord>(distributionId);
  }
  save(sender: string, distributionId: string, record: SenderKeyRecord) {
    return this.dir(sender).write(distributionId, record);
  }
  remove(sender: string, distributionId: string) {
    return this.dir(sender).remove(distributionId);
  }
  loadOwn(groupId: string) {
    return this.own.read<OwnSenderKey>(groupId);
  }
  saveOwn(groupId: string, key: OwnSenderKey) {
    return this.own.write(groupId, key);
  }
  removeOwn(groupId: string) {
    return this.own.remove(groupId);
  }
}

export class FileGroupStateStore implements GroupStateStore {
  private readonly records: RecordDirectory;
  constructor(dir: string, options?: FileStoreOptions) {
    this.records = new RecordDirectory(dir, options);
  }
  load(groupId: string) {
    return this.records.read<GroupRecord>(groupId);
  }
  save(groupId: string, record: GroupRecord) {
    return this.records.write(groupId, record);
  }
  remove(groupId: string) {
    return this.records.remove(groupId);
  }
  async ids() {
    return (await this.records.names()).sort();
  }
}

export class FileGroupPendingStore implements GroupPendingStore {
  private readonly records: RecordDirectory;
  constructor(dir: string, options?: FileStoreOptions) {
    this.records = new RecordDirectory(dir, options);
  }
  async list() {
    await this.convertSnapshot();
    const ids = (await this.records.names()).map(Number).filter(Number.isInteger).sort((a, b) => a - b);
    const out: GroupPendingItem[] = [];
    for (const id of ids) {
      const item = await this.records.read<GroupPendingItem>(String(id));
      if (item) out.push(item);
    }
    return out;
  }
  put(item: GroupPendingItem) {
    return this.records.write(String(item.id), item);
  }
  remove(id: number) {
    return this.records.remove(String(id));
  }
  /** Earlier versions kept one snapshot record ("pending"): its items become records. */
  private async convertSnapshot(): Promise<void> {
    const snap = await this.records.read<GroupPendingSnapshot>("pending");
    if (!snap) return;
    let id = Math.max(0, ...(await this.records.names()).map(Number).filter(Number.isInteger)) + 1;
    for (const b of snap.bodies) await this.put({ id: id++, kind: "body", ...b });
    for (const d of snap.distributions) await this.put({ id: id++, kind: "distribution", ...d });
    for (const u of snap.updates) await this.put({ id: id++, kind: "update", ...u });
    await this.records.remove("pending");
  }
}

export class FileGroupOutboxStore implements GroupOutboxStore {
  private readonly records: RecordDirectory;
  constructor(dir: string, options?: FileStoreOptions) {
    this.records = new RecordDirectory(dir, options);
  }
  async list() {
    const seqs = (await this.records.names()).map(Number).filter(Number.isInteger).sort((a, b) => a - b);
    const out: GroupOutboxItem[] = [];
    for (const seq of seqs) {
      const item = await this.records.read<GroupOutboxItem>(String(seq));
      if (item) out.push(item);
    }
    return out;
  }
  put(item: GroupOutboxItem) {
    return this.records.write(String(item.seq), item);
  }
  remove(seq: number) {
    return this.records.remove(String(seq));
  }
}

/** Group stores under `root` (may be the same root as createFileStores'). */
export function createFileGroupStores(root: string, options?: FileStoreOptions): GroupStores {
  return {
    senderKeys: new FileSenderKeyStore(root, options),
    groups: new FileGroupStateStore(path.join(root, "groups"), options),
    pending: new FileGroupPendingStore(path.join(root, "groups-pending"), options),
    outbox: new FileGroupOutboxStore(path.join(root, "groups-outbox"), options),
  };
}
