/**
 * Every store of a browser device in one IndexedDB database: the protocol stores, the
 * conversation store (history, outbox, receive cursor, trusted lists) and the group stores,
 * each a tree of record spaces (indexeddb-space.ts) laid out as the file stores are on Node.
 */
import type { MessengerStores } from "../messenger/messenger.js";
import type { GroupStores } from "./group-interfaces.js";
import { openIndexedDbSpaces, type IndexedDbOptions } from "./indexeddb-space.js";
import { RecordConversationStore } from "./record-conversation-store.js";
import { createRecordGroupStores } from "./record-group-stores.js";
import { createRecordStores } from "./record-stores.js";

export interface IndexedDbStores extends MessengerStores {
  groups: GroupStores;
  /** Closes the database (after Messenger.close()). */
  close(): void;
}

/** Opens (or creates) the database `name` (one per device) and its stores. */
export async function openIndexedDbStores(name: string, options?: IndexedDbOptions): Promise<IndexedDbStores> {
  const { open, close } = await openIndexedDbSpaces(name, options);
  return {
    protocol: createRecordStores("protocol", open),
    store: new RecordConversationStore("conversations", open),
    groups: createRecordGroupStores("groups", open),
    close,
  };
}
