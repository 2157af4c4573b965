/**
 * The one storage primitive every durable store is built on: a named space of records (a
 * directory of files on Node, a key range of one IndexedDB object store in a browser), each
 * record written whole and atomically, so a crash or a closed tab leaves the old or the new
 * record, never a torn one.
 */

export interface RecordSpace {
  /** The record, or undefined when there is none; a record that does not decode throws store_damaged. */
  read<T>(name: string): Promise<T | undefined>;
  /** Replaces the record atomically; resolves once it is durable. */
  write(name: string, value: unknown): Promise<void>;
  remove(name: string): Promise<void>;
  names(): Promise<string[]>;
}

/** Opens the space at a path ("<root>/sessions", ...); the same path is the same space. */
export type OpenSpace = (path: string) => RecordSpace;

/** Joins path segments with "/" (no empty segments; the root may be absolute). */
export function joinPath(...parts: string[]): string {
  return parts
    .filter((p) => p.length > 0)
    .join("/")
    .replace(/\/{2,}/g, "/");
}
