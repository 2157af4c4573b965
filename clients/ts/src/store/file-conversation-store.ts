/** The durable ConversationStore on the file system (Node): record files as file-store.ts writes them. */
import { openFileSpace, type FileStoreOptions } from "./file-store.js";
import { RecordConversationStore } from "./record-conversation-store.js";

export class FileConversationStore extends RecordConversationStore {
  constructor(root: string, options: FileStoreOptions = {}) {
    super(root, openFileSpace(options));
  }
}
