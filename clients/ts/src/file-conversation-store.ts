/**
 * Durable ConversationStore on the file system, on the same atomic-record approach as the
 * protocol file store (store/file-store.ts: temp file, fsync, rename, fsync directory; mode
 * 0600). No native modules.
 *
 *   <root>/account/device.json        <root>/receive/state.json
 *   <root>/messages/<conversation>/<message id>.json
 *   <root>/seen/<key>.json            <root>/outbox/<zero-padded seq>.json
 *   <root>/trusted/<account>.json
 *
 * Holds message plaintext: this is the user's own device (see conversation-store.ts).
 */
import * as path from "node:path";
import { RecordDirectory, type FileStoreOptions } from "./store/file-store.js";
import {
  compareMessages,
  type AccountRecord,
  type ConversationKey,
  type ConversationStore,
  type OutboxItem,
  type ReceiveState,
  type StoredMessage,
  type TrustedDeviceList,
} from "./conversation-store.js";

const pad = (seq: number) => String(seq).padStart(15, "0");

export class FileConversationStore implements ConversationStore {
  private readonly account: RecordDirectory;
  private readonly receive: RecordDirectory;
  private readonly seen: RecordDirectory;
  private readonly outbox: RecordDirectory;
  private readonly trusted: RecordDirectory;
  private readonly conversations: RecordDirectory;
  private readonly messageDirs = new Map<ConversationKey, RecordDirectory>();

  constructor(
    private readonly root: string,
    private readonly options: FileStoreOptions = {},
  ) {
    this.account = new RecordDirectory(path.join(root, "account"), options);
    this.receive = new RecordDirectory(path.join(root, "receive"), options);
    this.seen = new RecordDirectory(path.join(root, "seen"), options);
    this.outbox = new RecordDirectory(path.join(root, "outbox"), options);
    this.trusted = new RecordDirectory(path.join(root, "trusted"), options);
    // An index of conversation keys (directory names are encoded, this keeps the real keys).
    this.conversations = new RecordDirectory(path.join(root, "conversations"), options);
  }

  private messagesOf(conversation: ConversationKey): RecordDirectory {
    let d = this.messageDirs.get(conversation);
    if (!d) {
      d = new RecordDirectory(path.join(this.root, "messages", encodeURIComponent(conversation)), this.options);
      this.messageDirs.set(conversation, d);
    }
    return d;
  }

  getAccount() {
    return this.account.read<AccountRecord>("device");
  }
  setAccount(record: AccountRecord) {
    return this.account.write("device", record);
  }
  getMessage(conversation: ConversationKey, id: string) {
    return this.messagesOf(conversation).read<StoredMessage>(id);
  }
  async putMessage(message: StoredMessage) {
    if (!(await this.conversations.read(message.conversation))) await this.conversations.write(message.conversation, { key: message.conversation });
    await this.messagesOf(message.conversation).write(message.id, message);
  }
  async listMessages(conversation: ConversationKey) {
    const dir = this.messagesOf(conversation);
    const all = await Promise.all((await dir.names()).map((n) => dir.read<StoredMessage>(n)));
    return all.filter((m): m is StoredMessage => m !== undefined).sort(compareMessages);
  }
  async listConversations() {
    return (await this.conversations.names()).sort();
  }
  async isSeen(key: string) {
    return (await this.seen.read(key)) !== undefined;
  }
  markSeen(key: string) {
    return this.seen.write(key, 1);
  }
  async getReceiveState() {
    return (await this.receive.read<ReceiveState>("state")) ?? { cursor: 0, pendingAcks: [] };
  }
  setReceiveState(state: ReceiveState) {
    return this.receive.write("state", state);
  }
  async listOutbox() {
    const names = (await this.outbox.names()).sort();
    const items = await Promise.all(names.map((n) => this.outbox.read<OutboxItem>(n)));
    return items.filter((i): i is OutboxItem => i !== undefined);
  }
  putOutbox(item: OutboxItem) {
    return this.outbox.write(pad(item.seq), item);
  }
  removeOutbox(seq: number) {
    return this.outbox.remove(pad(seq));
  }
  getTrustedList(accountId: string) {
    return this.trusted.read<TrustedDeviceList>(accountId);
  }
  setTrustedList(list: TrustedDeviceList) {
    return this.trusted.write(list.accountId, list);
  }
}
