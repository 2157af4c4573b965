/**
 * A throwaway nats-server for tests: its own free port and temp store, stopped and deleted
 * afterwards. With NATS_URL set, tests use that server instead (and `restart` is not
 * available, so fault tests skip). SEALPOST_NATS_SERVER_BIN picks another nats-server binary.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedNats, type EmbeddedNats } from "@sealpost/server/nats";

export interface TestNats {
  url: string;
  /** True when this helper owns the process (not NATS_URL). */
  owned: boolean;
  /** Stops the process and starts it again on the same port with the same store. */
  restart?: () => Promise<void>;
  /** Stops the process (the store stays until stop()). */
  kill?: () => Promise<void>;
  /** Starts it again after kill(). */
  start?: () => Promise<void>;
  /** The nats-server process id (owned only), e.g. to read its CPU time. */
  readonly pid?: number;
  /** Freezes the process (SIGSTOP): connections stay open, nothing is answered until resume(). */
  pause?: () => void;
  resume?: () => void;
  stop(): Promise<void>;
}

export async function startTestNats(opts: { forceOwn?: boolean } = {}): Promise<TestNats> {
  const external = process.env.NATS_URL;
  if (external && !opts.forceOwn) return { url: external, owned: false, stop: async () => {} };
  const dataDir = await mkdtemp(join(tmpdir(), "sealpost-nats-"));
  let server: EmbeddedNats = await startEmbeddedNats({ dataDir, bin: process.env.SEALPOST_NATS_SERVER_BIN });
  const port = server.port;
  const kill = () => server.stop();
  const start = async () => {
    server = await startEmbeddedNats({ dataDir, port, bin: process.env.SEALPOST_NATS_SERVER_BIN });
  };
  return {
    url: server.url,
    owned: true,
    kill,
    start,
    get pid() {
      return server.process.pid;
    },
    pause: () => void server.process.kill("SIGSTOP"),
    resume: () => void server.process.kill("SIGCONT"),
    restart: async () => {
      await kill();
      await start();
    },
    stop: async () => {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
