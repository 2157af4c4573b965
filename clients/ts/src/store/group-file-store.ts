/**
 * Durable group stores on the file system (Node): record-group-stores.ts over record files.
 *
 *   <root>/sender-keys/<sender address>/<distribution id>.json
 *   <root>/sender-keys-own/<group id>.json
 *   <root>/groups/<group id>.json
 *   <root>/groups-pending/<id>.json   (one waiting item each)
 *   <root>/groups-outbox/<seq>.json   (an earlier version's group outbox; moved to the Messenger's)
 */
import type { GroupStores } from "./group-interfaces.js";
import { openFileSpace, type FileStoreOptions } from "./file-store.js";
import { RecordGroupPendingStore, createRecordGroupStores } from "./record-group-stores.js";

/** Group stores under `root` (may be the same root as createFileStores'). */
export function createFileGroupStores(root: string, options?: FileStoreOptions): GroupStores {
  return createRecordGroupStores(root, openFileSpace(options));
}

/** The waiting-content store alone, on files (tests of its on-disk form). */
export class FileGroupPendingStore extends RecordGroupPendingStore {
  constructor(dir: string, options?: FileStoreOptions) {
    super(dir, openFileSpace(options));
  }
}
