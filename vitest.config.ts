import { defineConfig } from "vitest/config";

// One vitest run covers every workspace package. Integration tests start their own
// nats-server (test-support) and real HTTP/2 servers, so they get generous timeouts; no test
// asserts on timing.
export default defineConfig({
  test: {
    include: ["{server,clients/ts,clients/web,conformance,bench,test-support}/test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
  },
});
