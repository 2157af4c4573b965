/**
 * The embedded default: a nats-server child process with JetStream, on loopback, on a port
 * it picks itself, storing under a directory of ours. Used by the server when NATS_URL is
 * unset and by the tests (test-support) for a throwaway server.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdir, readFile, writeFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export class NatsServerMissingError extends Error {
  override name = "NatsServerMissingError";
  constructor(bin: string) {
    super(
      `nats-server not found (${bin}). Install it with \`apt-get install -y nats-server\` (Debian/Ubuntu), ` +
        `or set NATS_URL to an existing NATS server with JetStream.`,
    );
  }
}

export interface EmbeddedNatsOptions {
  /** Store directory; JetStream data goes under <dir>/jetstream. */
  dataDir: string;
  /** Binary to run. */
  bin?: string;
  /** Fixed client port; default: a free one chosen by nats-server. */
  port?: number;
  /** Extra lines for the config file (e.g. cluster blocks in the fault harness). */
  extraConfig?: string;
  /** Server name (distinct per node in a cluster). */
  serverName?: string;
  /** Called with each stderr line of the child (its own log). */
  onLog?: (line: string) => void;
}

export interface EmbeddedNats {
  /** nats://127.0.0.1:<port> */
  url: string;
  port: number;
  version: string;
  /** True when the config asks for fsync on every write (nats-server >= 2.10). */
  syncAlways: boolean;
  process: ChildProcess;
  /** Stops the child (SIGTERM, then SIGKILL after a grace period); idempotent. */
  stop(): Promise<void>;
}

/** `nats-server --version` as "2.9.10"; throws NatsServerMissingError when absent. */
export async function natsServerVersion(bin = "nats-server"): Promise<string> {
  try {
    const { stdout } = await execFileAsync(bin, ["--version"]);
    const m = /v?(\d+\.\d+\.\d+)/.exec(stdout);
    if (!m) throw new Error(`cannot read nats-server version from ${JSON.stringify(stdout.trim())}`);
    return m[1];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new NatsServerMissingError(bin);
    throw err;
  }
}

/**
 * Whether R3 stream replicas stay identical when a deleted message's Nats-Msg-Id is published
 * again after a replica restarted: from 2.10.14 the leader decides duplicates before
 * proposing (nats-server #5287); before, each replica decided from its own memory, which a
 * restart rebuilds from stored messages only (bench/src/nats-dedupe-probe.ts shows it).
 */
export function replicasDedupeConsistently(version: string): boolean {
  const [major, minor, patch] = version.split(/[.-]/).map(Number);
  if (major !== 2) return major > 2;
  return minor > 10 || (minor === 10 && patch >= 14);
}

/** sync_interval (fsync policy) arrived in nats-server 2.10; 2.9 rejects the field. */
export function supportsSyncAlways(version: string): boolean {
  const [major, minor] = version.split(".").map(Number);
  return major > 2 || (major === 2 && minor >= 10);
}

/**
 * The NATS the server uses: `natsUrl` when set, otherwise the embedded default started here
 * (and logged). The caller stops `embedded` when it stops.
 */
export async function natsOrEmbedded(
  o: { natsUrl: string; dataDir: string; natsServerBin: string },
  log: { info(msg: string, fields?: Record<string, unknown>): void },
): Promise<{ natsUrl: string; embedded?: EmbeddedNats }> {
  if (o.natsUrl) return { natsUrl: o.natsUrl };
  const embedded = await startEmbeddedNats({ dataDir: o.dataDir, bin: o.natsServerBin });
  log.info("embedded nats-server started", { url: embedded.url, version: embedded.version, dataDir: o.dataDir });
  return { natsUrl: embedded.url, embedded };
}

/** Starts nats-server and resolves once it accepts clients. */
export async function startEmbeddedNats(opts: EmbeddedNatsOptions): Promise<EmbeddedNats> {
  const bin = opts.bin ?? "nats-server";
  const version = await natsServerVersion(bin);
  const dataDir = resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true });
  await killStaleChild(dataDir);
  const syncAlways = supportsSyncAlways(version);
  const conf = [
    `# Written by sealpost for its embedded nats-server; regenerated at every start.`,
    `listen: "127.0.0.1:${opts.port ?? -1}"`,
    opts.serverName ? `server_name: ${JSON.stringify(opts.serverName)}` : "",
    `jetstream {`,
    `  store_dir: ${JSON.stringify(join(dataDir, "jetstream"))}`,
    // Without this a power loss can drop acknowledged writes (JetStream flushes every 2 min).
    syncAlways ? `  sync_interval: always` : `  # sync_interval: always needs nats-server >= 2.10 (this is ${version})`,
    `}`,
    `max_payload: 8MB`,
    opts.extraConfig ?? "",
  ].join("\n");
  const confPath = join(dataDir, "nats-server.conf");
  await writeFile(confPath, conf);

  // Own process group: a terminal's Ctrl-C reaches only us, and we stop the child in order
  // (after draining our NATS connection). If we exit without stop(), the exit hook kills it.
  const child = spawn(bin, ["-c", confPath], { stdio: ["ignore", "ignore", "pipe"], detached: true });
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  // Listen before anything else is awaited: a child that fails at once (its port taken)
  // can exit while the pid file is written, and a missed exit would leave the start hanging.
  const ready = new Promise<number>((resolveReady, rejectReady) => {
    let clientPort = 0;
    let buffer = "";
    // Its last words name the cause (a port in use, a bad store directory): the error carries them.
    const said: string[] = [];
    const onExit = (code: number | null) =>
      rejectReady(new Error(`nats-server exited with code ${code} before it was ready; see ${confPath}${said.length ? `; it said: ${said.join(" | ")}` : ""}`));
    // "close", not "exit": it comes after stderr is drained, so the last words are all there.
    child.once("close", onExit);
    child.once("error", (err) => rejectReady((err as NodeJS.ErrnoException).code === "ENOENT" ? new NatsServerMissingError(bin) : err));
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        opts.onLog?.(line);
        said.push(line);
        if (said.length > 5) said.shift();
        const m = /Listening for client connections on [^:]+:(\d+)/.exec(line);
        if (m) clientPort = Number(m[1]);
        if (/Server is ready/.test(line) && clientPort) {
          child.off("close", onExit);
          resolveReady(clientPort);
        }
      }
    });
  });
  ready.catch(() => {}); // handled by the await below, after the pid file is written
  await writeFile(join(dataDir, "nats-server.pid"), String(child.pid));
  const port = await ready;

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        process.off("exit", killOnExit);
        return done();
      }
      const killTimer = setTimeout(() => child.kill("SIGKILL"), 5000);
      child.once("exit", () => {
        clearTimeout(killTimer);
        process.off("exit", killOnExit);
        rm(join(dataDir, "nats-server.pid"), { force: true }).finally(done);
      });
      child.kill("SIGTERM");
    }));

  return { url: `nats://127.0.0.1:${port}`, port, version, syncAlways, process: child, stop };
}

/** A previous run killed with SIGKILL may have left its child holding the store; stop it. */
async function killStaleChild(dataDir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(await readFile(join(dataDir, "nats-server.pid"), "utf8"));
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8");
    if (!cmd.includes("nats-server")) return;
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      process.kill(pid, 0);
    }
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone already (or not ours to see): nothing to do.
  }
}
