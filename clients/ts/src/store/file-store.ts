/**
 * Durable stores on the file system (Node): each record space is a directory, each record one
 * JSON file written atomically (write a temp file, fsync it, rename over the old one, fsync
 * the directory), so a crash leaves either the old or the new record, never a torn one.
 * No native modules. Files are created with mode 0600: they hold private keys. The layout is
 * record-stores.ts's, with ".json" file names:
 *
 *   <root>/identity/local.json, identity/remote/<address>.json
 *   <root>/one-time-prekeys/<id>.json, signed-prekeys/<id>.json, kem-prekeys/<id>.json
 *   <root>/sessions/<address>.json, channels/sent/<address>.json, channels/received/<address>.json
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import type { ProtocolStores } from "../protocol/stores.js";
import type { OpenSpace, RecordSpace } from "./record-space.js";
import { createRecordStores } from "./record-stores.js";
import { decodeRecord, encodeRecord } from "./json-codec.js";
import { storeDamaged } from "../core/messenger-errors.js";

export interface FileStoreOptions {
  /** fsync files and directories (default true; tests may turn it off for speed). */
  fsync?: boolean;
}

/** A directory of JSON records with atomic replace. */
export class RecordDirectory implements RecordSpace {
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
    const file = this.file(name);
    let text: string;
    try {
      text = await fs.readFile(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    try {
      return decodeRecord<T>(text);
    } catch (e) {
      throw storeDamaged(file, e);
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

/** Record spaces as directories (created on first write). */
export function openFileSpace(options: FileStoreOptions = {}): OpenSpace {
  return (dir) => new RecordDirectory(dir, options);
}

/** A full set of file-backed protocol stores under `root`. */
export function createFileStores(root: string, options?: FileStoreOptions): ProtocolStores {
  return createRecordStores(root, openFileSpace(options));
}
