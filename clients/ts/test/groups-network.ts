/**
 * An in-memory network of devices running GroupManager over a fake GroupPort: per-device
 * mailboxes in send order, a server-side device-list check for group sends, and hooks for a
 * hostile server (deliver a body to a device it was not addressed to, drop or reorder mail).
 * Pairwise content is delivered as the authenticated Content (the pairwise layer is tested
 * on its own); group bodies are the real sender-key bytes.
 */
import { clone } from "@bufbuild/protobuf";
import { ContentSchema, type Content } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import type { CryptoProvider } from "../src/crypto/provider.js";
import { GroupManager, type GroupManagerOptions } from "../src/groups/group-manager.js";
import type { GroupEvent, GroupMessage } from "../src/groups/group-events.js";
import type { GroupDeviceInfo, DeviceRef, GroupPort, GroupSendOutcome } from "../src/groups/group-port.js";
import { generateLocalIdentity, type LocalIdentity } from "../src/protocol/identity.js";
import type { GroupStores } from "../src/store/group-interfaces.js";
import { createMemoryGroupStores } from "../src/store/group-memory-store.js";
import { addressKey } from "../src/protocol/address.js";

export type Mail =
  | { kind: "pairwise"; from: DeviceRef; content: Content }
  | { kind: "group"; from: DeviceRef; messageId: Uint8Array; body: Uint8Array; ts: number };

export class FakeDevice implements GroupPort {
  manager: GroupManager;
  readonly identity: LocalIdentity;
  readonly inbox: Mail[] = [];
  readonly got: GroupMessage[] = [];
  readonly events: GroupEvent[] = [];
  readonly errors: { from: DeviceRef; code: string }[] = [];
  /** Every group body sent by this device (what a hostile server could hand anyone). */
  readonly sentBodies: Mail[] = [];
  /** Errors the next devices() look-ups throw, in order (a directory outage, an untrusted list). */
  readonly lookupFailures: Error[] = [];
  /** Errors the next received() calls throw, in order (the message store failing). */
  readonly receiveFailures: Error[] = [];

  constructor(
    readonly net: FakeNetwork,
    readonly self: DeviceRef,
    private readonly provider: CryptoProvider,
    identity: LocalIdentity,
    readonly stores: GroupStores = createMemoryGroupStores(),
  ) {
    this.identity = identity;
    this.manager = new GroupManager({ provider, stores, port: this, now: () => net.clock, ...net.managerOptions });
  }
  /** A new GroupManager over `stores` (a restart, for durable stores). */
  restart(stores: GroupStores): void {
    this.manager = new GroupManager({ provider: this.provider, stores, port: this, now: () => this.net.clock, ...this.net.managerOptions });
  }
  get key(): string {
    return addressKey(this.self);
  }
  async signingSeed() {
    return this.identity.signingSeed;
  }
  async devices(accountId: string): Promise<GroupDeviceInfo[]> {
    const failure = this.lookupFailures.shift();
    if (failure) throw failure;
    return this.net.devicesOf(accountId).map((d) => ({ deviceId: d.self.deviceId, signingKey: d.identity.signingKey }));
  }
  async sendPairwise(content: Content, accounts: string[]): Promise<void> {
    const targets = [...accounts, this.self.accountId].flatMap((a) => this.net.devicesOf(a)).filter((d) => d !== this);
    for (const d of new Set(targets)) d.inbox.push({ kind: "pairwise", from: this.self, content: clone(ContentSchema, content) });
    this.net.pairwiseSends++;
  }
  async sendGroupBody(messageId: Uint8Array, body: Uint8Array, devices: DeviceRef[]): Promise<GroupSendOutcome> {
    // The server's check: every current device of every addressed account, and only those.
    const accounts = new Set(devices.map((d) => d.accountId));
    const want = new Set(
      [...accounts]
        .flatMap((a) => this.net.devicesOf(a))
        .filter((d) => d !== this)
        .map((d) => d.key),
    );
    const got = new Set(devices.map(addressKey));
    const mismatched = [...accounts].filter((a) => [...want, ...got].some((k) => k.startsWith(`${a}.`) && want.has(k) !== got.has(k)));
    if (mismatched.length > 0) return { stored: false, mismatchedAccounts: mismatched };
    const mail: Mail = { kind: "group", from: this.self, messageId, body, ts: this.net.clock };
    this.sentBodies.push(mail);
    for (const k of got) this.net.device(k).inbox.push(mail);
    this.net.groupSends++;
    return { stored: true, serverTimestampMs: this.net.clock };
  }
  async received(m: GroupMessage) {
    const failure = this.receiveFailures.shift();
    if (failure) throw failure;
    this.got.push(m);
  }
  emit(e: GroupEvent) {
    this.events.push(e);
  }
  texts(groupId?: string): string[] {
    return this.got.filter((m) => !groupId || m.groupId === groupId).map((m) => (m.content.body.case === "text" ? m.content.body.value.body : "?"));
  }
  /** Processes one mail item. */
  async process(mail: Mail): Promise<void> {
    try {
      if (mail.kind === "pairwise") await this.manager.handleContent(mail.from, mail.content);
      else await this.manager.handleGroupBody(mail.from, mail.messageId, mail.body, mail.ts);
    } catch (e) {
      this.errors.push({ from: mail.from, code: (e as { code?: string }).code ?? String(e) });
    }
  }
  /** Processes the whole inbox in order (optionally transformed: reorder, drop). */
  async drain(transform?: (mail: Mail[]) => Mail[]): Promise<void> {
    while (this.inbox.length > 0) {
      const batch = this.inbox.splice(0);
      for (const m of transform ? transform(batch) : batch) await this.process(m);
    }
  }
}

export class FakeNetwork {
  readonly all: FakeDevice[] = [];
  clock = 1_700_000_000_000;
  pairwiseSends = 0;
  groupSends = 0;
  constructor(
    private readonly provider: CryptoProvider,
    /** Extra options of every device's GroupManager. */
    readonly managerOptions: Partial<GroupManagerOptions> = {},
  ) {}
  async add(accountId: string, deviceId: number, stores?: GroupStores): Promise<FakeDevice> {
    const d = new FakeDevice(this, { accountId, deviceId }, this.provider, await generateLocalIdentity(this.provider, deviceId), stores);
    this.all.push(d);
    return d;
  }
  /** Revokes a device: it leaves its account's list (it keeps whatever it already holds). */
  revoke(d: FakeDevice): void {
    this.revoked.add(d.key);
  }
  private readonly revoked = new Set<string>();
  devicesOf(accountId: string): FakeDevice[] {
    return this.all.filter((d) => d.self.accountId === accountId && !this.revoked.has(d.key));
  }
  device(key: string): FakeDevice {
    return this.all.find((d) => d.key === key)!;
  }
  /** Delivers until every inbox is empty. */
  async settle(): Promise<void> {
    for (let round = 0; round < 50 && this.all.some((d) => d.inbox.length > 0); round++) {
      for (const d of this.all) await d.drain();
    }
  }
}
