/**
 * The usual integration-test setup in one call: a throwaway nats-server and one sealpost
 * server for the whole test file, both stopped afterwards. Call it at the top level of a
 * test file; the returned object forwards to the running server from the first test on.
 */
import { afterAll, beforeAll } from "vitest";
import type { RunningServer } from "@sealpost/server";
import { startTestNats, type TestNats } from "./nats-server.js";
import { startTestServer } from "./sealpost-server.js";

export function useTestServer(): RunningServer {
  let nats: TestNats | undefined;
  let server: RunningServer | undefined;
  beforeAll(async () => {
    nats = await startTestNats();
    server = await startTestServer(nats.url);
  });
  afterAll(async () => {
    await server?.close();
    await nats?.stop();
  });
  return new Proxy({} as RunningServer, {
    get(_, prop) {
      if (!server) throw new Error("useTestServer: the server starts in beforeAll; use it inside tests");
      return Reflect.get(server, prop);
    },
  });
}
