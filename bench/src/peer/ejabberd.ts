/**
 * Debian's ejabberd as the benchmark's peer, on its own config, spool and port, started as a
 * plain Erlang VM without distribution (no node name, so no epmd and no cookie: nothing the
 * machine's RabbitMQ shares) and never through ejabberdctl. Plain TCP, no shapers, in-band
 * registration open, offline storage on (mod_offline), as a new user would run it.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export const EJABBERD_DOMAIN = "bench.local";

export interface Ejabberd {
  port: number;
  pid: number;
  version: string;
  stop(): Promise<void>;
}

/** The installed ejabberd's version, or undefined when the package is not installed. */
export function ejabberdVersion(): string | undefined {
  try {
    const out = execFileSync("dpkg-query", ["-W", "-f=${Status} ${Version}", "ejabberd"], { encoding: "utf8" });
    return out.startsWith("install ok installed") ? out.split(" ").pop() : undefined;
  } catch {
    return undefined;
  }
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function startEjabberd(): Promise<Ejabberd> {
  const version = ejabberdVersion();
  if (!version) throw new Error("ejabberd is not installed (apt-get install -y ejabberd)");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sealpost-ejabberd-"));
  const port = await freePort();
  fs.mkdirSync(path.join(dir, "spool"));
  fs.writeFileSync(
    path.join(dir, "ejabberd.yml"),
    `hosts: ["${EJABBERD_DOMAIN}"]
loglevel: warning
registration_timeout: infinity
listen:
  - port: ${port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 1048576
    shaper: none
    access: c2s
    starttls: false
    backlog: 4096
auth_method: internal
access_rules:
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 1000000
  c2s_shaper: none
modules:
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_register:
    ip_access: all
    access: register
  mod_disco: {}
  mod_ping: {}
`,
  );
  // No scheduler busy-waiting: on a shared 2-core box a spinning VM would take CPU from
  // whatever is measured next (interleaved samples).
  const child: ChildProcess = spawn(
    "erl",
    [
      "-noinput",
      "-noshell",
      "+K",
      "true",
      "+P",
      "1000000",
      "+sbwt",
      "none",
      "+sbwtdcpu",
      "none",
      "+sbwtdio",
      "none",
      "-mnesia",
      "dir",
      `"${path.join(dir, "spool")}"`,
      "-s",
      "ejabberd",
    ],
    {
      cwd: dir,
      env: {
        ...process.env,
        ERL_LIBS: "/usr/lib/x86_64-linux-gnu",
        EJABBERD_CONFIG_PATH: path.join(dir, "ejabberd.yml"),
        EJABBERD_LOG_PATH: path.join(dir, "ejabberd.log"),
      },
      stdio: ["ignore", "ignore", "ignore"],
    },
  );
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`ejabberd exited at start; see ${dir}/ejabberd.log`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error("ejabberd did not listen within 60 s");
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    port,
    pid: child.pid!,
    version,
    stop: async () => {
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
