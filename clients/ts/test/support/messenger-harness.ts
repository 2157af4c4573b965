/**
 * The shared setup of the Messenger integration tests: a real nats-server and server started
 * before a test file's tests, and both stopped (and the Messengers' temp dirs removed) after
 * them.
 */
import { afterAll, beforeAll } from "vitest";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support/index.js";
import type { RunningServer } from "@sealpost/server/server.js";
import { removeTempDirs } from "../messenger-helpers.js";

/** The running server of a test file (its `url` is read inside the tests, once started). */
export interface MessengerHarnessServer {
  readonly url: string;
}

/**
 * Registers the file's beforeAll/afterAll hooks (call it at the top level of a test file) and
 * returns the server, whose `url` is available from the first test on.
 */
export function useMessengerHarness(): MessengerHarnessServer {
  let nats: TestNats;
  let server: RunningServer;
  beforeAll(async () => {
    nats = await startTestNats();
    server = await startTestServer(nats.url);
  });
  afterAll(async () => {
    await server?.close();
    await nats?.stop();
    await removeTempDirs();
  });
  return {
    get url() {
      return server.url;
    },
  };
}
