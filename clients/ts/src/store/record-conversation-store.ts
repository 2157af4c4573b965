/**
 * The durable ConversationStore over record spaces (record-space.ts): files on Node
 * (FileConversationStore), IndexedDB in a browser. One record per message, outbox item,
 * trusted list, seen key:
 *
 *   <root>/account/device        <root>/receive/state
 *   <root>/messages/<conversation>/<message id>
 *   <root>/seen/<key>            <root>/outbox/<zero-padded seq>
 *   <root>/trusted/<account>       <root>/access/<account>
 *
 * Holds message plaintext: this is the user's own device (see conversation-store.ts).
 */
import { joinPath, type OpenSpace, type RecordSpace } from "./record-space.js";
import {
  compareMessages,
  type AccountRecord,
  type ContactAccessKey,
  type TransparencyRecord,
  type ConversationKey,
  type ConversationStore,
  type OutboxItem,
  type ReceiveState,
  type StoredMessage,
  type TrustedDeviceList,
} from "./conversation-store.js";

const pad = (seq: number) => String(seq).padStart(15, "0");

export class RecordConversationStore implements ConversationStore {
  private readonly account: RecordSpace;
  private readonly receive: RecordSpace;
  private readonly seen: RecordSpace;
  private readonly outbox: RecordSpace;
  private readonly trusted: RecordSpace;
  private readonly accessKeys: RecordSpace;
  private readonly transparency: RecordSpace;
  private readonly conversations: RecordSpace;
  private readonly messageDirs = new Map<ConversationKey, RecordSpace>();

  constructor(
    private readonly root: string,
    private readonly open: OpenSpace,
  ) {
    this.account = open(joinPath(root, "account"));
    this.receive = open(joinPath(root, "receive"));
    this.seen = open(joinPath(root, "seen"));
    this.outbox = open(joinPath(root, "outbox"));
    this.trusted = open(joinPath(root, "trusted"));
    this.accessKeys = open(joinPath(root, "access"));
    this.transparency = open(joinPath(root, "transparency"));
    // An index of conversation keys (directory names are encoded, this keeps the real keys).
    this.conversations = open(joinPath(root, "conversations"));
  }

  private messagesOf(conversation: ConversationKey): RecordSpace {
    let d = this.messageDirs.get(conversation);
    if (!d) {
      d = this.open(joinPath(this.root, "messages", encodeURIComponent(conversation)));
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
  getAccessKey(accountId: string) {
    return this.accessKeys.read<ContactAccessKey>(accountId);
  }
  async setAccessKey(accountId: string, key: ContactAccessKey | undefined) {
    if (key) await this.accessKeys.write(accountId, key);
    else await this.accessKeys.remove(accountId);
  }
  getTransparency() {
    return this.transparency.read<TransparencyRecord>("head");
  }
  setTransparency(record: TransparencyRecord) {
    return this.transparency.write("head", record);
  }
}
