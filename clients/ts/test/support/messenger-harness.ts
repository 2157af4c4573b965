/**
 * The shared setup of the Messenger integration tests: a real nats-server and server started
 * before a test file's tests (test-support's useTestServer), both stopped and the
 * Messengers' temp dirs removed after them.
 */
import { afterAll } from "vitest";
import { useTestServer } from "@sealpost/test-support";
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
  const server = useTestServer();
  afterAll(removeTempDirs);
  return server;
}
