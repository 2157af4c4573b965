/**
 * Record spaces in IndexedDB (browsers): one database, one object store "records" keyed by
 * [space path, record name], the value the record's JSON text (json-codec.ts, as on disk).
 * Every write and remove is its own readwrite transaction and resolves only when it has
 * committed ("strict" durability by default), so a reload or a closed tab after a call
 * returned never loses what it wrote; an interrupted transaction leaves the old record.
 */
import { storeDamaged } from "../core/messenger-errors.js";
import { decodeRecord, encodeRecord } from "./json-codec.js";
import type { OpenSpace, RecordSpace } from "./record-space.js";

const STORE = "records";

export interface IndexedDbOptions {
  /** Durability of each write (default "strict": committed to disk before it resolves). */
  durability?: "strict" | "relaxed" | "default";
  /** The IndexedDB factory (default: globalThis.indexedDB). */
  indexedDB?: IDBFactory;
}

/** An open database: its record spaces, and close(). */
export interface IndexedDbSpaces {
  open: OpenSpace;
  close(): void;
}

/** Opens (creating on first use) the database `name` and returns its record spaces. */
export async function openIndexedDbSpaces(name: string, options: IndexedDbOptions = {}): Promise<IndexedDbSpaces> {
  const factory = options.indexedDB ?? globalThis.indexedDB;
  if (!factory) throw new Error("IndexedDB is not available here");
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const req = factory.open(name, 1);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error(`cannot open IndexedDB ${name}`));
    req.onblocked = () => reject(new Error(`IndexedDB ${name} is blocked by another open connection`));
  });
  const durability = options.durability ?? "strict";
  return { open: (path) => new IndexedDbSpace(db, name, path, durability), close: () => db.close() };
}

class IndexedDbSpace implements RecordSpace {
  constructor(
    private readonly db: IDBDatabase,
    private readonly dbName: string,
    private readonly path: string,
    private readonly durability: "strict" | "relaxed" | "default",
  ) {}

  async read<T>(name: string): Promise<T | undefined> {
    const text = await this.run<unknown>("readonly", (s) => s.get([this.path, name]));
    if (text === undefined) return undefined;
    try {
      if (typeof text !== "string") throw new Error("not a record");
      return decodeRecord<T>(text);
    } catch (e) {
      throw storeDamaged(`indexeddb:${this.dbName}/${this.path}/${name}`, e);
    }
  }

  async write(name: string, value: unknown): Promise<void> {
    const text = encodeRecord(value);
    await this.run("readwrite", (s) => s.put(text, [this.path, name]));
  }

  async remove(name: string): Promise<void> {
    await this.run("readwrite", (s) => s.delete([this.path, name]));
  }

  async names(): Promise<string[]> {
    // Arrays sort after strings in IndexedDB's key order: [path] < [path, any name] < [path, []].
    const keys = await this.run<IDBValidKey[]>("readonly", (s) => s.getAllKeys(IDBKeyRange.bound([this.path], [this.path, []], true, true)));
    return keys.map((k) => (k as [string, string])[1]);
  }

  /** One request in its own transaction; resolves with its result once the transaction committed. */
  private run<R>(mode: IDBTransactionMode, request: (s: IDBObjectStore) => IDBRequest): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const tx = this.db.transaction(STORE, mode, { durability: this.durability });
      const req = request(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result as R);
      tx.onerror = () => reject(tx.error ?? req.error ?? new Error("IndexedDB transaction failed"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    });
  }
}
