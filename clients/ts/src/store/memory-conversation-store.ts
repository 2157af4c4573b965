/** In-memory ConversationStore: tests and throwaway clients. Records are copied in and out. */
import {
  compareMessages,
  type AccountRecord,
  type ContactAccessKey,
  type ConversationKey,
  type ConversationStore,
  type OutboxItem,
  type ReceiveState,
  type StoredMessage,
  type TransparencyRecord,
  type TrustedDeviceList,
} from "./conversation-store.js";

const copy = <T>(v: T): T => structuredClone(v);

export class MemoryConversationStore implements ConversationStore {
  private account?: AccountRecord;
  private readonly messages = new Map<ConversationKey, Map<string, StoredMessage>>();
  private readonly seen = new Set<string>();
  private receive: ReceiveState = { cursor: 0, pendingAcks: [] };
  private readonly outbox = new Map<number, OutboxItem>();
  private readonly trusted = new Map<string, TrustedDeviceList>();
  private readonly accessKeys = new Map<string, ContactAccessKey>();
  private transparency?: TransparencyRecord;

  async getAccount() {
    return this.account && copy(this.account);
  }
  async setAccount(record: AccountRecord) {
    this.account = copy(record);
  }
  async getMessage(conversation: ConversationKey, id: string) {
    const m = this.messages.get(conversation)?.get(id);
    return m && copy(m);
  }
  async putMessage(message: StoredMessage) {
    let c = this.messages.get(message.conversation);
    if (!c) this.messages.set(message.conversation, (c = new Map()));
    c.set(message.id, copy(message));
  }
  async listMessages(conversation: ConversationKey) {
    return [...(this.messages.get(conversation)?.values() ?? [])].map(copy).sort(compareMessages);
  }
  async listConversations() {
    return [...this.messages.keys()].sort();
  }
  async isSeen(key: string) {
    return this.seen.has(key);
  }
  async markSeen(key: string) {
    this.seen.add(key);
  }
  async getReceiveState() {
    return copy(this.receive);
  }
  async setReceiveState(state: ReceiveState) {
    this.receive = copy(state);
  }
  async listOutbox() {
    return [...this.outbox.values()].sort((a, b) => a.seq - b.seq).map(copy);
  }
  async putOutbox(item: OutboxItem) {
    this.outbox.set(item.seq, copy(item));
  }
  async removeOutbox(seq: number) {
    this.outbox.delete(seq);
  }
  async getTrustedList(accountId: string) {
    const t = this.trusted.get(accountId);
    return t && copy(t);
  }
  async setTrustedList(list: TrustedDeviceList) {
    this.trusted.set(list.accountId, copy(list));
  }
  async getAccessKey(accountId: string) {
    const k = this.accessKeys.get(accountId);
    return k && copy(k);
  }
  async setAccessKey(accountId: string, key: ContactAccessKey | undefined) {
    if (key) this.accessKeys.set(accountId, copy(key));
    else this.accessKeys.delete(accountId);
  }
  async getTransparency() {
    return this.transparency && copy(this.transparency);
  }
  async setTransparency(record: TransparencyRecord) {
    this.transparency = copy(record);
  }
}
