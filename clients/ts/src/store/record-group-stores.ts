/**
 * Durable group stores over record spaces (record-space.ts): one record per sender key,
 * group and waiting item, atomically replaced; files with mode 0600 on Node (sender keys are
 * secrets), IndexedDB in a browser.
 *
 *   <root>/sender-keys/<sender address>/<distribution id>.json
 *   <root>/sender-keys-own/<group id>.json
 *   <root>/groups/<group id>.json
 *   <root>/groups-pending/<id>.json   (one waiting item each)
 *   <root>/groups-outbox/<seq>.json
 */
import type { OwnSenderKey, SenderKeyRecord } from "../protocol/sender-keys.js";
import { joinPath, type OpenSpace, type RecordSpace } from "./record-space.js";
import type {
  GroupOutboxItem,
  GroupOutboxStore,
  GroupPendingItem,
  GroupPendingSnapshot,
  GroupPendingStore,
  GroupRecord,
  GroupStateStore,
  GroupStores,
  SenderKeyStore,
} from "./group-interfaces.js";

export class RecordSenderKeyStore implements SenderKeyStore {
  private readonly dirs = new Map<string, RecordSpace>();
  private readonly own: RecordSpace;
  constructor(
    private readonly root: string,
    private readonly open: OpenSpace,
  ) {
    this.own = open(joinPath(root, "sender-keys-own"));
  }
  private dir(sender: string): RecordSpace {
    let d = this.dirs.get(sender);
    if (!d) {
      d = this.open(joinPath(this.root, "sender-keys", encodeURIComponent(sender)));
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

export class RecordGroupStateStore implements GroupStateStore {
  private readonly records: RecordSpace;
  constructor(dir: string, open: OpenSpace) {
    this.records = open(dir);
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

export class RecordGroupPendingStore implements GroupPendingStore {
  private readonly records: RecordSpace;
  constructor(dir: string, open: OpenSpace) {
    this.records = open(dir);
  }
  async list() {
    await this.convertSnapshot();
    const ids = (await this.records.names())
      .map(Number)
      .filter(Number.isInteger)
      .sort((a, b) => a - b);
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

export class RecordGroupOutboxStore implements GroupOutboxStore {
  private readonly records: RecordSpace;
  constructor(dir: string, open: OpenSpace) {
    this.records = open(dir);
  }
  async list() {
    const seqs = (await this.records.names())
      .map(Number)
      .filter(Number.isInteger)
      .sort((a, b) => a - b);
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

/** Group stores under `root` (may be the same root as the protocol stores'), in the spaces `open` gives. */
export function createRecordGroupStores(root: string, open: OpenSpace): GroupStores {
  return {
    senderKeys: new RecordSenderKeyStore(root, open),
    groups: new RecordGroupStateStore(joinPath(root, "groups"), open),
    pending: new RecordGroupPendingStore(joinPath(root, "groups-pending"), open),
    outbox: new RecordGroupOutboxStore(joinPath(root, "groups-outbox"), open),
  };
}
