/**
 * Durable stores on the file system: one JSON file per record under a directory per kind,
 * written atomically (write a temp file, fsync it, rename over the old one, fsync the
 * directory), so a crash leaves either the old or the new record, never a torn one.
 * No native modules. Files are created with mode 0600: they hold private keys.
 *
 *   <root>/identity/local.json, identity/remote/<address>.json
 *   <root>/one-time-prekeys/<id>.json, signed-prekeys/<id>.json, kem-prekeys/<id>.json
 *   <root>/sessions/<address>.json, channels/sent/<address>.json, channels/received/<address>.json
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { bytesEqual } from "../crypto/bytes.js";
import type { LocalIdentity, RemoteIdentity } from "../protocol/identity.js";
import type { SessionRecord } from "../protocol/ratchet-state.js";
import type { ChannelReceiveState } from "../protocol/channel.js";
import type { ChannelStore, IdentityChange, IdentityStore, KeyRecordStore, ProtocolStores, SessionStore } from "./interfaces.js";
import { decodeRecord, encodeRecord } from "./json-codec.js";

export interface FileStoreOptions {
  /** fsync files and directories (default true; tests may turn it off for speed). */
  fsync?: boolean;
}

/** A directory of JSON records with atomic replace. */
export class RecordDirectory {
  private ready?: Promise<void>;
  constructor(
    readonly dir: string,
    private readonly options: FileStoreOptions = {},
  ) {}

  private ensure(): Promise<void> {
    this.ready ??= fs.mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() => undefined);
    return this.ready;
  }

  private file(name: string): string {
    // Names are address keys or numbers; encode anything else so no name escapes the directory.
    return path.join(this.dir, `${encodeURIComponent(name)}.json`);
  }

  async read<T>(name: string): Promise<T | undefined> {
    try {
      return decodeRecord<T>(await fs.readFile(this.file(name), "utf8"));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  }

  async write(name: string, value: unknown): Promise<void> {
    await this.ensure();
    const target = this.file(name);
    const temp = `${target}.${randomBytes(6).toString("hex")}.tmp`;
    const handle = await fs.open(temp, "w", 0o600);
    try {
      await handle.writeFile(encodeRecord(value), "utf8");
      if (this.options.fsync !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fs.rename(temp, target);
    } catch (e) {
      await fs.rm(temp, { force: true });
      throw e;
    }
    if (this.options.fsync !== false) await this.syncDir();
  }

  private async syncDir(): Promise<void> {
    const d = await fs.open(this.dir, "r");
    try {
      await d.sync();
    } catch {
      // Some file systems refuse fsync on directories; the rename is still atomic.
    } finally {
      await d.close();
    }
  }

  async remove(name: string): Promise<void> {
    await fs.rm(this.file(name), { force: true });
  }

  async names(): Promise<string[]> {
    try {
      const entries = await fs.readdir(this.dir);
      return entries.filter((f) => f.endsWith(".json")).map((f) => decodeURIComponent(f.slice(0, -5)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw e;
    }
  }
}

export class FileIdentityStore implements IdentityStore {
  private readonly local: RecordDirectory;
  private readonly remote: RecordDirectory;
  constructor(root: string, options?: FileStoreOptions) {
    this.local = new RecordDirectory(path.join(root, "identity"), options);
    this.remote = new RecordDirectory(path.join(root, "identity", "remote"), options);
  }
  getLocalIdentity() {
    return this.local.read<LocalIdentity>("local");
  }
  setLocalIdentity(identity: LocalIdentity) {
    return this.local.write("local", identity);
  }
  getRemoteIdentity(address: string) {
    return this.remote.read<RemoteIdentity>(address);
  }
  async saveRemoteIdentity(address: string, identity: RemoteIdentity): Promise<IdentityChange> {
    const old = await this.remote.read<RemoteIdentity>(address);
    await this.remote.write(address, identity);
    if (!old) return "new";
    return bytesEqual(old.signingKey, identity.signingKey) && bytesEqual(old.dhKey, identity.dhKey) ? "unchanged" : "changed";
  }
  removeRemoteIdentity(address: string) {
    return this.remote.remove(address);
  }
}

export class FileKeyRecordStore<R> implements KeyRecordStore<R> {
  private readonly records: RecordDirectory;
  constructor(dir: string, options?: FileStoreOptions) {
    this.records = new RecordDirectory(dir, options);
  }
  load(keyId: number) {
    return this.records.read<R>(String(keyId));
  }
  save(keyId: number, record: R) {
    return this.records.write(String(keyId), record);
  }
  remove(keyId: number) {
    return this.records.remove(String(keyId));
  }
  async ids() {
    return (await this.records.names()).map(Number).filter(Number.isInteger).sort((a, b) => a - b);
  }
}

export class FileSessionStore implements SessionStore {
  private readonly records: RecordDirectory;
  constructor(dir: string, options?: FileStoreOptions) {
    this.records = new RecordDirectory(dir, options);
  }
  load(address: string) {
    return this.records.read<SessionRecord>(address);
  }
  save(address: string, record: SessionRecord) {
    return this.records.write(address, record);
  }
  remove(address: string) {
    return this.records.remove(address);
  }
}

export class FileChannelStore implements ChannelStore {
  private readonly sent: RecordDirectory;
  private readonly received: RecordDirectory;
  constructor(root: string, options?: FileStoreOptions) {
    this.sent = new RecordDirectory(path.join(root, "sent"), options);
    this.received = new RecordDirectory(path.join(root, "received"), options);
  }
  async loadSent(address: string) {
    return (await this.sent.read<{ sequence: number }>(address))?.sequence ?? 0;
  }
  saveSent(address: string, sequence: number) {
    return this.sent.write(address, { sequence });
  }
  loadReceived(address: string) {
    return this.received.read<ChannelReceiveState>(address);
  }
  saveReceived(address: string, state: ChannelReceiveState) {
    return this.received.write(address, state);
  }
}

/** A full set of file-backed stores under `root`. */
export function createFileStores(root: string, options?: FileStoreOptions): ProtocolStores {
  return {
    identity: new FileIdentityStore(root, options),
    oneTimePrekeys: new FileKeyRecordStore(path.join(root, "one-time-prekeys"), options),
    signedPrekeys: new FileKeyRecordStore(path.join(root, "signed-prekeys"), options),
    kemPrekeys: new FileKeyRecordStore(path.join(root, "kem-prekeys"), options),
    sessions: new FileSessionStore(path.join(root, "sessions"), options),
    channels: new FileChannelStore(path.join(root, "channels"), options),
  };
}
