/**
 * A sealpost server instance for tests, in this process, on a free loopback port, against a
 * given NATS URL. Several instances against one NATS model a horizontally scaled deployment.
 */
import { createLogger, defaultConfig, silentLogger, startServer, type RunningServer, type ServerConfig, type ServerDeps } from "@sealpost/server";

export async function startTestServer(natsUrl: string, over: Partial<ServerConfig> = {}, deps: ServerDeps = {}): Promise<RunningServer> {
  const log = process.env.SEALPOST_TEST_LOGS ? createLogger("debug") : silentLogger;
  return startServer(
    // Tests create accounts and claim prekeys by the hundred from one address: the abuse
    // limits are raised here and lowered by the tests that check them.
    defaultConfig({
      natsUrl,
      port: 0,
      host: "127.0.0.1",
      shutdownGraceSeconds: 1,
      tokenSecret: "test-secret-test-secret-test-secret!",
      accountsPerAddressPerHour: 1e6,
      oneTimePrekeysPerDevicePerMinute: 1e6,
      ...over,
    }),
    {
      log,
      ...deps,
      delivery: { ...deps.delivery, limits: { streamOpensPerMinute: 1e6, ...deps.delivery?.limits } },
      // The conformance suite authenticates hundreds of devices a minute from one address.
      directory: { ...deps.directory, limits: { challengesPerMinute: 1e6, transparencyReadsPerMinute: 1e6, ...deps.directory?.limits } },
    },
  );
}
