/**
 * One process per store. A store is one device: two processes using it at once would fight
 * over its mailbox stream (each replacing the other's) and write the same session files
 * (ratchets out of step). So the first sealpost command that opens a store owns it, by
 * listening on a Unix socket next to it; a later command on the same store (e.g. `send`
 * while `listen` runs) connects and hands its command line to the owner, which runs it with
 * its open device and streams the output and exit code back. Nothing is replaced, nothing
 * is written twice.
 *
 * Wire: one JSON line from the client ({argv, cwd, stdin?}), then JSON lines from the owner
 * ({out} | {err} | {exit}).
 */
import { createHash } from "node:crypto";
import { chmodSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface DelegatedCommand {
  argv: string[];
  cwd: string;
  /** Text read from the client's stdin (`send bob -`). */
  stdin?: string;
}

export interface CommandIo {
  out(line: string): void;
  err(line: string): void;
}

/** Unix socket paths are limited to ~104 bytes; a long store path gets one under the temp dir. */
export function controlSocketPath(storeDir: string): string {
  const inStore = join(storeDir, "control.sock");
  if (Buffer.byteLength(inStore) < 100) return inStore;
  return join(tmpdir(), `sealpost-${createHash("sha256").update(storeDir).digest("hex").slice(0, 16)}.sock`);
}

/** Runs `cmd` on the store's owner; undefined when no process owns the store. */
export function delegate(socketPath: string, cmd: DelegatedCommand, io: CommandIo): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let connected = false;
    let buf = "";
    let exit: number | undefined;
    sock.setEncoding("utf8");
    sock.on("connect", () => {
      connected = true;
      sock.write(`${JSON.stringify(cmd)}\n`);
    });
    sock.on("data", (d: string) => {
      buf += d;
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = JSON.parse(line) as { out?: string; err?: string; exit?: number };
        if (m.out !== undefined) io.out(m.out);
        if (m.err !== undefined) io.err(m.err);
        if (m.exit !== undefined) exit = m.exit;
      }
    });
    sock.on("error", (e: NodeJS.ErrnoException) => {
      if (!connected && (e.code === "ENOENT" || e.code === "ECONNREFUSED")) resolve(undefined);
      else if (!connected) reject(e);
      else io.err(`lost the connection to the process using this store: ${e.message}`);
    });
    sock.on("close", () => {
      if (!connected) return;
      resolve(exit ?? 1);
    });
  });
}

export interface StoreOwnership {
  /** Stops taking commands and waits for the ones running. */
  release(): Promise<void>;
}

/**
 * Takes the store: listens on its socket and runs each handed-over command with `run`, one
 * at a time. Undefined when another process got it first (hand the command to it instead).
 */
export async function own(socketPath: string, run: (cmd: DelegatedCommand, io: CommandIo) => Promise<number>): Promise<StoreOwnership | undefined> {
  let queue = Promise.resolve();
  const server = net.createServer((sock) => {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("error", () => {});
    const onData = (d: string) => {
      buf += d;
      const i = buf.indexOf("\n");
      if (i < 0) return;
      sock.off("data", onData);
      let cmd: DelegatedCommand;
      try {
        cmd = JSON.parse(buf.slice(0, i)) as DelegatedCommand;
      } catch {
        sock.destroy();
        return;
      }
      const send = (m: object) => {
        if (!sock.destroyed) sock.write(`${JSON.stringify(m)}\n`);
      };
      queue = queue.then(async () => {
        let code = 1;
        try {
          code = await run(cmd, { out: (l) => send({ out: l }), err: (l) => send({ err: l }) });
        } catch (e) {
          send({ err: `sealpost: ${e instanceof Error ? e.message : String(e)}` });
        }
        send({ exit: code });
        sock.end();
      });
    };
    sock.on("data", onData);
  });
  const listening = await listenOrStale(server, socketPath);
  if (!listening) return undefined;
  try {
    chmodSync(socketPath, 0o600);
  } catch {
    // The store directory (0700) protects it anyway.
  }
  return {
    release: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await queue;
    },
  };
}

/** Listens on the path; a socket file nobody answers on (a crashed owner) is removed first. */
async function listenOrStale(server: net.Server, path: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      server.once("error", resolve);
      server.listen(path, () => {
        server.off("error", resolve);
        resolve(undefined);
      });
    });
    if (!err) return true;
    if (err.code !== "EADDRINUSE") throw err;
    const alive = await new Promise<boolean>((resolve) => {
      const probe = net.connect(path);
      probe.once("connect", () => {
        probe.destroy();
        resolve(true);
      });
      probe.once("error", () => resolve(false));
    });
    if (alive) return false;
    rmSync(path, { force: true });
  }
  return false;
}
