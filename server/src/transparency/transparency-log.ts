/**
 * The key transparency log (docs/PROTOCOL.md, "Key transparency"): every accepted
 * device-list version is a leaf of an append-only Merkle tree kept in the JetStream stream
 * SP_KT, one message per leaf, in stream order (leaf index = stream sequence - 1). Nothing
 * is ever deleted or rewritten there.
 *
 * Every instance follows the stream with an ordered consumer and holds the whole tree in
 * memory (merkle-tree.ts: ~58 bytes of hashes a leaf, plus the 72-byte leaf), so all instances compute
 * the same root for the same size. Heads are signed by the log key, an Ed25519 key derived
 * from the instances' shared token secret like the sender-certificate key.
 *
 * A version is appended by the instance that committed it. If that instance died between
 * the commit and the append, the first GetDeviceList of that version appends it (the same
 * Nats-Msg-Id, so two appenders inside JetStream's duplicate window store it once; a later
 * repeat is a harmless second leaf with the same content, and lookups use the first).
 */
import { createHash, sign } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ConsumerMessages } from "@nats-io/jetstream";
import { LogEntrySchema, SignedTreeHeadSchema, type LogEntry, type SignedTreeHead } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import type { Nats } from "../nats/connection.js";
import { KT_STREAM, KT_SUBJECT } from "../nats/layout.js";
import type { Logger } from "../logger.js";
import { certificateKeyFromSeed } from "../directory/sender-certificates.js";
import { MerkleTree, PackedList, leafHash } from "./merkle-tree.js";

export const TREE_HEAD_LABEL = "sealpost.kt.tree-head.v1";
export const ACCOUNT_INDEX_LABEL = "sealpost.kt.index.v1";
export const LOG_KEY_LABEL = "sealpost.kt.log-key.v1";
/** Leaves per GetLogEntries. */
export const MAX_LOG_ENTRIES = 1000;
const LEAF_BYTES = 72;
/** How long an append waits for this instance's copy of the tree to include it. */
const VISIBLE_TIMEOUT_MS = 10_000;
/** How long an append waits for the consumer before reading its leaf itself. */
const FILL_AFTER_MS = 50;
/** A cached tree head is signed again after this long. */
const HEAD_MAX_AGE_MS = 60_000;

/** SHA-256("sealpost.kt.index.v1" || account_id). */
export function accountIndex(accountId: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(ACCOUNT_INDEX_LABEL).update(accountId, "utf8").digest());
}

/** SHA-256 of a SignedDeviceList.device_list. */
export function listHash(deviceList: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(deviceList).digest());
}

/** account_index (32) || u64be(version) || list_hash (32). */
export function encodeLeaf(e: { accountIndex: Uint8Array; version: bigint; listHash: Uint8Array }): Uint8Array {
  const out = new Uint8Array(LEAF_BYTES);
  out.set(e.accountIndex, 0);
  new DataView(out.buffer).setBigUint64(32, e.version);
  out.set(e.listHash, 40);
  return out;
}

function decodeLeaf(b: Uint8Array): LogEntry | undefined {
  if (b.length !== LEAF_BYTES) return undefined;
  return create(LogEntrySchema, {
    accountIndex: b.slice(0, 32),
    version: new DataView(b.buffer, b.byteOffset, b.length).getBigUint64(32),
    listHash: b.slice(40, 72),
  });
}

/** The bytes a tree head's signature covers. */
export function treeHeadSignedBytes(size: bigint, root: Uint8Array, timestampMs: bigint): Uint8Array {
  const label = Buffer.from(TREE_HEAD_LABEL, "utf8");
  const out = Buffer.alloc(label.length + 8 + 32 + 8);
  label.copy(out, 0);
  out.writeBigUInt64BE(size, label.length);
  out.set(root, label.length + 8);
  out.writeBigUInt64BE(timestampMs, label.length + 40);
  return new Uint8Array(out);
}

const positionKey = (index: Uint8Array, version: bigint) => `${Buffer.from(index).toString("hex")}.${version}`;

export class TransparencyLog {
  private readonly tree = new MerkleTree();
  /** The leaves' bytes, packed (decoded on demand for GetLogEntries). */
  private readonly leaves = new PackedList(LEAF_BYTES);
  /** First leaf of each (account index, version). */
  private readonly positions = new Map<string, number>();
  private readonly waiters: { size: number; resolve: () => void }[] = [];
  private readonly key: ReturnType<typeof certificateKeyFromSeed>;
  private head: SignedTreeHead | undefined;
  private messages: ConsumerMessages | undefined;
  private filling: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly nats: Nats,
    logKeySeed: Uint8Array,
    private readonly now: () => number,
    private readonly log: Logger,
  ) {
    this.key = certificateKeyFromSeed(0, logKeySeed);
  }

  /** The Ed25519 public key that signs tree heads. */
  get logKey(): Uint8Array {
    return this.key.publicKey;
  }

  get size(): number {
    return this.tree.size;
  }

  /** Follows SP_KT from its first message; resolves once the stream's current end is in memory. */
  async start(): Promise<void> {
    const info = await this.nats.jsm.streams.info(KT_STREAM);
    const end = info.state.last_seq;
    const consumer = await this.nats.js.consumers.get(KT_STREAM);
    this.messages = await consumer.consume();
    // A long log takes a while to replay (docs/BENCHMARKS.md, kt_replay): no time limit here.
    const caughtUp = this.waitForSize(end, Number.POSITIVE_INFINITY);
    void (async () => {
      for await (const m of this.messages!) {
        if (this.closed) break;
        this.add(m.data, m.seq);
      }
    })().catch((err) => {
      if (!this.closed) this.log.error("key transparency log consumer stopped", { error: String(err) });
    });
    await caughtUp;
  }

  /**
   * Adds the message at stream sequence `seq` if it is the next leaf. The consumer delivers in
   * order; reads that filled a gap first (fill) make it deliver leaves already here, which are
   * skipped. A later one than the next (a gap) is left to fill.
   */
  private add(data: Uint8Array, seq: number): void {
    if (seq <= this.tree.size) return;
    if (seq > this.tree.size + 1) {
      void this.fill(seq);
      return;
    }
    const entry = decodeLeaf(data);
    if (!entry) {
      // Never written by sealpost; still part of the stream's order, so it is a leaf (its
      // bytes as they are) and every instance computes the same tree.
      this.log.error("key transparency log holds a malformed leaf", { seq, bytes: data.length });
    }
    const index = this.tree.appendHash(leafHash(data));
    // A malformed leaf (never written by sealpost) is served as zeros.
    this.leaves.push(entry ? data : new Uint8Array(LEAF_BYTES));
    if (entry) {
      const k = positionKey(entry.accountIndex, entry.version);
      if (!this.positions.has(k)) this.positions.set(k, index);
    }
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.tree.size >= this.waiters[i].size) this.waiters.splice(i, 1)[0].resolve();
    }
  }

  /**
   * Reads the leaves up to stream sequence `target` by sequence, in order. After a NATS
   * restart the consumer may take its heartbeat interval (~30 s) to notice and resume; an
   * append must not wait for that.
   */
  private fill(target: number): Promise<void> {
    const run = this.filling.then(async () => {
      while (this.tree.size < target && !this.closed) {
        const seq = this.tree.size + 1;
        const m = await this.nats.jsm.streams.getMessage(KT_STREAM, { seq });
        if (!m) throw new Error(`key transparency leaf at sequence ${seq} is missing from ${KT_STREAM}`);
        this.add(m.data, seq);
      }
    });
    this.filling = run.catch((err) => this.log.debug("key transparency catch-up read failed", { error: String(err) }));
    return this.filling;
  }

  private waitForSize(size: number, timeoutMs = VISIBLE_TIMEOUT_MS): Promise<void> {
    if (this.tree.size >= size) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === Number.POSITIVE_INFINITY
          ? undefined
          : setTimeout(() => {
              const at = this.waiters.indexOf(w);
              if (at >= 0) this.waiters.splice(at, 1);
              reject(new ConnectError("the key transparency log is catching up; retry", Code.Unavailable));
            }, timeoutMs);
      // The consumer normally delivers within milliseconds; if it does not, read instead
      // (not while replaying at start-up, where the consumer is busy reading them all).
      const nudge = timer && setTimeout(() => void this.fill(size), FILL_AFTER_MS);
      const w = {
        size,
        resolve: () => {
          clearTimeout(timer);
          clearTimeout(nudge);
          resolve();
        },
      };
      this.waiters.push(w);
    });
  }

  /** The leaf index of a device-list version, appending it first if the log lacks it. */
  async ensure(accountId: string, version: bigint, deviceList: Uint8Array): Promise<number> {
    const index = accountIndex(accountId);
    const key = positionKey(index, version);
    const known = this.positions.get(key);
    if (known !== undefined) return known;
    const leaf = encodeLeaf({ accountIndex: index, version, listHash: listHash(deviceList) });
    const ack = await this.nats.publisher.publish(KT_SUBJECT, leaf, { msgId: key, expectStream: KT_STREAM });
    await this.waitForSize(ack.seq);
    const at = this.positions.get(key);
    if (at === undefined) throw new ConnectError("key transparency leaf not found after its append", Code.Internal);
    return at;
  }

  /**
   * A head for the current size, signed once per size and again when a minute old, so a
   * head's timestamp says how fresh it is even while nothing is appended.
   */
  treeHead(): SignedTreeHead {
    const size = BigInt(this.tree.size);
    if (this.head?.treeSize === size && this.now() - Number(this.head.timestampMs) < HEAD_MAX_AGE_MS) return this.head;
    const root = this.tree.root();
    const ts = BigInt(this.now());
    const signature = new Uint8Array(sign(null, treeHeadSignedBytes(size, root, ts), this.key.privateKey));
    this.head = create(SignedTreeHeadSchema, { treeSize: size, rootHash: root, timestampMs: ts, signature });
    return this.head;
  }

  /** The leaf of a device-list version with an audit path to the current head. */
  async inclusion(accountId: string, version: bigint, deviceList: Uint8Array) {
    const leafIndex = await this.ensure(accountId, version, deviceList);
    const head = this.treeHead();
    return { treeHead: head, leafIndex: BigInt(leafIndex), auditPath: this.tree.inclusionProof(leafIndex, Number(head.treeSize)) };
  }

  /**
   * RFC 9162 PROOF(first, D[second]). A size this instance has not read yet but the stream
   * has (a head signed by a quicker instance, a client comparing with it) is read first.
   */
  async consistency(first: bigint, second: bigint): Promise<Uint8Array[]> {
    if (first < 1n || first > second) throw new ConnectError(`first_size must be 1..second_size, got ${first} and ${second}`, Code.InvalidArgument);
    if (second > BigInt(this.tree.size)) {
      const streamSize = (await this.nats.jsm.streams.info(KT_STREAM)).state.last_seq;
      if (second <= BigInt(streamSize)) await this.fill(Number(second));
    }
    if (second > BigInt(this.tree.size)) {
      throw new ConnectError(`second_size ${second} is beyond this server's tree (${this.tree.size} leaves); fetch the tree head again`, Code.OutOfRange);
    }
    return this.tree.consistencyProof(Number(first), Number(second));
  }

  entries(start: bigint, count: number): LogEntry[] {
    if (!Number.isInteger(count) || count < 1 || count > MAX_LOG_ENTRIES)
      throw new ConnectError(`count must be 1..${MAX_LOG_ENTRIES}, got ${count}`, Code.InvalidArgument);
    if (start > BigInt(this.tree.size)) throw new ConnectError(`start ${start} is beyond the log (${this.tree.size} leaves)`, Code.OutOfRange);
    const from = Number(start);
    const to = Math.min(this.tree.size, from + count);
    const out: LogEntry[] = [];
    for (let i = from; i < to; i++) out.push(decodeLeaf(this.leaves.at(i))!);
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.messages?.close().catch(() => {});
  }
}
