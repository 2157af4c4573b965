/**
 * A sealpost server instance in its own process, built as `npm start` builds it
 * (server/build.mjs), so a test can kill it for real: SIGKILL means no drain, no close,
 * sockets reset by the kernel. It listens on a free loopback port and reports its URL in its
 * "listening" log line.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

let built: string | undefined;
/**
 * The server built into one module (inside the checkout, where its npm packages resolve),
 * once per test process: built under a private name, then renamed over the shared one, so
 * test files building at the same time never see a half-written file. Returns its path.
 */
export function builtServer(): string {
  if (built) return built;
  const out = path.join(root, ".tmp", "sealpost-server.mjs");
  const own = path.join(root, ".tmp", `sealpost-server-${process.pid}.mjs`);
  execFileSync(process.execPath, [path.join(root, "server/build.mjs"), "--out", own, "--inline-sourcemap"], { cwd: root, stdio: "inherit" });
  fs.renameSync(own, out);
  built = out;
  return out;
}

export interface ServerProcess {
  url: string;
  pid: number;
  /** Every stderr line (the server's JSON logs). */
  logs: string[];
  /** kill -9. Resolves when the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful shutdown). Resolves when the process is gone. */
  stop(): Promise<void>;
}

export async function spawnServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, ["--enable-source-maps", builtServer()], {
    cwd: root,
    env: {
      ...process.env,
      SEALPOST_HOST: "127.0.0.1",
      SEALPOST_PORT: "0",
      SEALPOST_LOG_LEVEL: "info",
      SEALPOST_ACCOUNTS_PER_ADDRESS_PER_HOUR: "1000000",
      SEALPOST_ONE_TIME_PREKEYS_PER_DEVICE_PER_MINUTE: "1000000",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const logs: string[] = [];
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const url = await new Promise<string>((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => {
      // Not left running behind a failed start (it would hold its port and NATS connection).
      child.kill("SIGKILL");
      reject(new Error(`server process not listening after 60 s (its "listening" line is logged at info): ${logs.slice(-5).join("\n")}`));
    }, 60_000);
    child.once("exit", (code) => reject(new Error(`server process exited (${code}) before listening:\n${logs.join("\n")}`)));
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        const m = /"msg":"listening",(?:"worker":\d+,)?"url":"(https?:\/\/[^"]+)"/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      }
    });
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const signal = async (sig: NodeJS.Signals) => {
    if (alive()) child.kill(sig);
    await exited;
    process.off("exit", killOnExit);
  };
  return { url, pid: child.pid!, logs, kill: () => signal("SIGKILL"), stop: () => signal("SIGTERM") };
}
