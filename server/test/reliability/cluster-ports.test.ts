/**
 * The test cluster's ports are picked before its nodes bind them; another process (tests run
 * in parallel) can take one in between. The harness then starts the whole cluster again on
 * new ports instead of failing the test file: here the first port it picks is already held.
 * The nodes of the failed round must all be gone before their stores are deleted: none may
 * still be starting (writing to a store being deleted) or be left running.
 */
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { dirname } from "node:path";
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
    const root = dirname(cluster.nodes[0].dataDir);
    try {
      expect(picks[0]).toBe(taken);
      // Two rounds of three nodes' client, route and monitor ports: the second one serves.
      expect(picks).toHaveLength(18);
      expect(cluster.nodes.map((n) => n.clientPort)).not.toContain(taken);
      expect(cluster.nodes.every((n) => n.running)).toBe(true);
    } finally {
      await cluster.close();
    }
    expect(natsServersUnder(root)).toEqual([]);
  } finally {
    held.close();
  }
}, 120_000);

/** Command lines of running processes that name a path under `dir` (nats-server -c <dir>/...). */
function natsServersUnder(dir: string): string[] {
  const out = execFileSync("ps", ["-eo", "args="], { encoding: "utf8" });
  return out.split("\n").filter((line) => line.includes(`${dir}/`) && !line.includes("ps -eo"));
}
