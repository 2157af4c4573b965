/**
 * The test cluster's ports are picked before its nodes bind them; another process (tests run
 * in parallel) can take one in between. The harness then starts the whole cluster again on
 * new ports instead of failing the test file: here the first port it picks is already held.
 */
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { expect, it } from "vitest";
import { freePort, startNatsCluster } from "@sealpost/test-support";

it("a port taken between picking and binding: the cluster starts on new ports", async () => {
  const held = createServer().listen(0, "127.0.0.1");
  await once(held, "listening");
  const taken = (held.address() as AddressInfo).port;
  let first = true;
  const picks: number[] = [];
  const pick = async () => {
    const p = first ? taken : await freePort();
    first = false;
    picks.push(p);
    return p;
  };
  try {
    const cluster = await startNatsCluster({ size: 3, freePort: pick });
    try {
      expect(picks[0]).toBe(taken);
      // Two rounds of three nodes' client, route and monitor ports: the second one serves.
      expect(picks).toHaveLength(18);
      expect(cluster.nodes.map((n) => n.clientPort)).not.toContain(taken);
      expect(cluster.nodes.every((n) => n.running)).toBe(true);
    } finally {
      await cluster.close();
    }
  } finally {
    held.close();
  }
}, 120_000);
