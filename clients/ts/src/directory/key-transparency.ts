/**
 * The client side of key transparency (docs/PROTOCOL.md, "Key transparency"). Every device
 * list this device accepts must be in the server's append-only log: its leaf (the account's
 * index, the version, the list's hash) has an audit path to a tree head signed by the log
 * key. The device keeps the log key it saw first and the largest head it verified, and every
 * new head must be consistent with that one (one log, only ever appended to), in whichever
 * direction the sizes differ. So a server that shows two people different lists of one
 * account has to keep two logs, and the first device that sees both heads proves it.
 */
import { create } from "@bufbuild/protobuf";
import { SignedTreeHeadSchema, type LogInclusion, type SignedTreeHead } from "@sealpost/gen/sealpost/directory/v1/transparency_pb.js";
import { bytesEqual, concatBytes, utf8 } from "../crypto/bytes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { ConversationStore, TransparencyRecord } from "../store/conversation-store.js";
import type { ServerApi } from "../transport/server-api.js";
import { KT_INDEX_LABEL, transparencyLeaf, treeHeadSignedBytes } from "./labels.js";
import { frontierRoot, leafHash, verifyConsistency, verifyInclusion } from "./merkle-proofs.js";
import { readLogLeaves } from "./log-reader.js";

/** A device list that the log does not vouch for, or a log that lies; `problem` says how. */
export class TransparencyError extends Error {
  constructor(
    readonly problem: "missing-proof" | "log-key-changed" | "bad-tree-head" | "not-included" | "inconsistent-log" | "unknown-own-version",
    message: string,
  ) {
    super(message);
    this.name = "TransparencyError";
  }
}

export function accountIndex(p: CryptoProvider, accountId: string): Uint8Array {
  return p.sha256(concatBytes(KT_INDEX_LABEL, utf8(accountId)));
}

export class KeyTransparency {
  /** Verifications run one at a time: each may move the stored head. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Monitor runs, one at a time. */
  private monitoring: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly api: ServerApi,
    private readonly provider: CryptoProvider,
    private readonly store: ConversationStore,
  ) {}

  /**
   * Checks that version `version` of `accountId`'s list (SignedDeviceList.device_list bytes
   * `deviceList`) is in the log, by GetDeviceList's `inclusion`; throws TransparencyError if not.
   */
  verify(accountId: string, version: bigint, deviceList: Uint8Array, inclusion: LogInclusion | undefined): Promise<void> {
    return this.serialized(() => this.check(accountId, version, deviceList, inclusion));
  }

  private async check(accountId: string, version: bigint, deviceList: Uint8Array, kt: LogInclusion | undefined): Promise<void> {
    const p = this.provider;
    const head = kt?.treeHead;
    if (!kt || !head) throw new TransparencyError("missing-proof", `the device list of ${accountId} came without its place in the key transparency log`);
    const known = await this.store.getTransparency();
    const logKey = known?.logKey ?? (await this.api.open.getTreeHead({})).logKey;
    await this.requireSigned(head, logKey, known);
    const leaf = leafHash(p, transparencyLeaf(accountIndex(p, accountId), version, p.sha256(deviceList)));
    if (!verifyInclusion(p, leaf, Number(kt.leafIndex), Number(head.treeSize), kt.auditPath, head.rootHash)) {
      throw new TransparencyError(
        "not-included",
        `the device list of ${accountId} (version ${version}) is not in the key transparency log at the head the server gave`,
      );
    }
    await this.advance(known, logKey, head);
  }

  /**
   * Gossip: a tree head another device verified (Content.log_head). It must carry the log
   * key this device trusts and be consistent with this device's own largest head; if it is
   * larger, it becomes this device's head. A head that fails either check means the server
   * shows the two devices different logs (or keys): TransparencyError.
   */
  checkGossip(head: SignedTreeHead): Promise<void> {
    return this.serialized(async () => {
      const known = await this.store.getTransparency();
      if (!known) return; // Nothing to compare with yet: this device has not verified a head.
      if (!(await this.provider.ed25519Verify(known.logKey, treeHeadSignedBytes(head.treeSize, head.rootHash, head.timestampMs), head.signature))) {
        throw new TransparencyError(
          "log-key-changed",
          "a contact's tree head is not signed by the log key this device trusts: the server shows the two of you different logs",
        );
      }
      await this.advance(known, known.logKey, head);
    });
  }

  /** The largest head this device verified, to gossip (undefined before the first). */
  async latestHead(): Promise<SignedTreeHead | undefined> {
    const k = await this.store.getTransparency();
    return (
      k && create(SignedTreeHeadSchema, { treeSize: BigInt(k.treeSize), rootHash: k.rootHash, timestampMs: BigInt(k.timestampMs), signature: k.signature })
    );
  }

  /**
   * The monitor: reads the log's leaves this device has not read yet, checks that they make
   * up the signed head (so none was left out or changed), and that every leaf of this
   * device's own account is a version in `ownVersions` (version -> SHA-256 of its
   * device_list: the account's verified chain). A version the account never made, e.g. a
   * list shown only to others, is `unknown-own-version`. Pages of `pageSize` leaves.
   */
  monitor(accountId: string, ownVersions: Map<bigint, Uint8Array>, pageSize = 1000): Promise<{ read: number; size: number }> {
    // One monitor at a time; the long read of leaves does not hold up the per-list checks.
    const run = this.monitoring.then(() => this.readLog(accountId, ownVersions, pageSize));
    this.monitoring = run.catch(() => {});
    return run;
  }

  /** Runs `fn` after the checks and head updates queued before it. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private async readLog(accountId: string, ownVersions: Map<bigint, Uint8Array>, pageSize: number) {
    const p = this.provider;
    const { treeHead: head, logKey: served } = await this.api.open.getTreeHead({});
    if (!head) throw new TransparencyError("missing-proof", "GetTreeHead returned no tree head");
    const known = await this.serialized(async () => {
      const before = await this.store.getTransparency();
      const logKey = before?.logKey ?? served;
      await this.requireSigned(head, logKey, before, served);
      await this.advance(before, logKey, head);
      return (await this.store.getTransparency())!;
    });
    const size = Number(head.treeSize);
    const start = known.monitored?.size ?? 0;
    if (start > size) return { read: 0, size: start };
    const frontier = (known.monitored?.frontier ?? []).map((f) => ({ height: f.height, hash: f.hash }));
    const mine = accountIndex(p, accountId);
    let foreign: bigint | undefined;
    const read = await readLogLeaves(this.api, p, frontier, start, size, pageSize, (e) => {
      if (foreign === undefined && bytesEqual(e.accountIndex, mine)) {
        const expected = ownVersions.get(e.version);
        if (!expected || !bytesEqual(expected, e.listHash)) foreign = e.version;
      }
    });
    if (foreign !== undefined) {
      throw new TransparencyError("unknown-own-version", `the key transparency log holds version ${foreign} of ${accountId}, which this account never made`);
    }
    if (read < size) throw new TransparencyError("inconsistent-log", `the log returned no leaves at ${read} of ${size}`);
    if (!bytesEqual(frontierRoot(p, frontier), head.rootHash)) {
      throw new TransparencyError("inconsistent-log", `the log's leaves do not make up its signed head at ${size} leaves`);
    }
    await this.serialized(async () => {
      const latest = (await this.store.getTransparency())!;
      await this.store.setTransparency({ ...latest, monitored: { size, frontier } });
    });
    return { read: size - start, size };
  }

  /**
   * The head must carry `logKey`'s signature. If it does not and this device had pinned a
   * key, a different key named by the server now (`served`, else asked for) is
   * log-key-changed; otherwise the head is forged: bad-tree-head.
   */
  private async requireSigned(head: SignedTreeHead, logKey: Uint8Array, known: TransparencyRecord | undefined, served?: Uint8Array): Promise<void> {
    if (await this.provider.ed25519Verify(logKey, treeHeadSignedBytes(head.treeSize, head.rootHash, head.timestampMs), head.signature)) return;
    if (known) {
      const current = served ?? (await this.api.open.getTreeHead({})).logKey;
      if (!bytesEqual(current, known.logKey))
        throw new TransparencyError("log-key-changed", "the key transparency log key changed since this device first saw it");
    }
    throw new TransparencyError("bad-tree-head", "a key transparency tree head does not carry the log's signature");
  }

  /** Makes `head` consistent with the stored head, then keeps the larger of the two. */
  private async advance(known: TransparencyRecord | undefined, logKey: Uint8Array, head: SignedTreeHead): Promise<void> {
    const size = Number(head.treeSize);
    if (known) {
      const [small, large] =
        known.treeSize <= size
          ? [
              { size: known.treeSize, root: known.rootHash },
              { size, root: head.rootHash },
            ]
          : [
              { size, root: head.rootHash },
              { size: known.treeSize, root: known.rootHash },
            ];
      const proof =
        small.size === large.size || small.size === 0
          ? []
          : (await this.api.open.getConsistencyProof({ firstSize: BigInt(small.size), secondSize: BigInt(large.size) })).proof;
      if (!verifyConsistency(this.provider, small.size, large.size, small.root, large.root, proof)) {
        throw new TransparencyError(
          "inconsistent-log",
          `the key transparency log at ${size} leaves is not consistent with the one this device saw at ${known.treeSize}: the server shows different logs`,
        );
      }
      if (known.treeSize >= size) return;
    }
    await this.store.setTransparency({
      ...known,
      logKey,
      treeSize: size,
      rootHash: head.rootHash,
      timestampMs: Number(head.timestampMs),
      signature: head.signature,
    });
  }
}
