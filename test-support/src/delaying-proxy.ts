/**
 * A TCP proxy that holds every chunk a client sends for a fixed time before passing it on
 * (answers come back at once). Put between a server instance and nats-server, it makes that
 * instance's publishes reach nats-server late, in order: the network or scheduling delay
 * under which ordering promises between instances are tested.
 */
import * as net from "node:net";

export interface DelayingProxy {
  /** nats://127.0.0.1:<port> of the proxy. */
  url: string;
  close(): Promise<void>;
}

export async function startDelayingProxy(targetUrl: string, delayMs: number): Promise<DelayingProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    // Timers of one duration fire in the order they were set: chunks keep their order.
    client.on("data", (chunk) => setTimeout(() => upstream.destroyed || upstream.write(chunk), delayMs));
    upstream.pipe(client);
    client.on("close", () => setTimeout(() => upstream.destroy(), delayMs));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `nats://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
