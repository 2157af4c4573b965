/** A Messenger's durable stores on Node: files under one directory, atomic writes. */
import type { MessengerStores } from "../messenger/messenger.js";
import { FileConversationStore } from "./file-conversation-store.js";
import { createFileStores } from "./file-store.js";

/** Durable stores under `dir` (protocol/ and conversations/); `fsync: false` only for tests. */
export function createFileMessengerStores(dir: string, opts: { fsync?: boolean } = {}): MessengerStores {
  return { protocol: createFileStores(`${dir}/protocol`, opts), store: new FileConversationStore(`${dir}/conversations`, opts) };
}
