/**
 * Shared bits of the directory tests: asserting a precise ConnectError, and a snapshot of an
 * account's stored directory state to prove a rejected request changed nothing, and two server
 * instances sharing one nats-server.
 */
import { afterAll, beforeAll, expect } from "vitest";
import { createClient, ConnectError, type Code } from "@connectrpc/connect";
import { toBinary } from "@bufbuild/protobuf";
import { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import { SignedDeviceListSchema } from "@sealpost/gen/sealpost/directory/v1/device_list_pb.js";
import { plainTransport, startTestNats, startTestServer, type TestAccount, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "../src/server.js";

export async function expectConnectError(call: Promise<unknown>, code: Code, message: string | RegExp): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  expect(err, "the call should have failed").toBeDefined();
  expect({ code: err!.code, message: err!.rawMessage }).toMatchObject({
    code,
    message: typeof message === "string" ? message : expect.stringMatching(message),
  });
  return err!;
}

/** Current list + whole history (as bytes) and every listed device's prekey state. */
export async function directoryState(baseUrl: string, account: TestAccount): Promise<unknown> {
  const open = createClient(DirectoryService, plainTransport(baseUrl));
  const res = await open.getDeviceList({ accountId: account.accountId, historyAfterVersion: 0n });
  const prekeys = await Promise.all(
    account.devices.map((d) =>
      d.directory
        .getPrekeyCount({})
        .then((c) => ({ n: c.oneTimePrekeyCount, s: c.signedPrekeyId, k: c.kemPrekeyId }))
        .catch((e) => ConnectError.from(e).code),
    ),
  );
  return {
    current: Buffer.from(toBinary(SignedDeviceListSchema, res.deviceList!)).toString("hex"),
    history: res.history.map((h) => Buffer.from(toBinary(SignedDeviceListSchema, h)).toString("hex")),
    prekeys,
  };
}

/**
 * Two server instances sharing one nats-server, started before the calling test file's tests
 * and stopped after them (call it at the top level of the file). `a` and `b` are the running
 * instances from the first test on.
 */
export function useTwoInstances(): { readonly a: RunningServer; readonly b: RunningServer } {
  let nats: TestNats;
  let a: RunningServer;
  let b: RunningServer;
  beforeAll(async () => {
    nats = await startTestNats();
    [a, b] = await Promise.all([startTestServer(nats.url), startTestServer(nats.url)]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await nats?.stop();
  });
  return {
    get a() {
      return a;
    },
    get b() {
      return b;
    },
  };
}
