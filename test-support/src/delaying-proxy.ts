/**
 * A TCP proxy that holds every chunk a client sends for a fixed time before passing it on
 * (answers come back at once, unless `answers` delays them too). Put between a server
 * instance and nats-server, it makes that instance's publishes reach nats-server late, in
 * order: the network or scheduling delay under which ordering promises between instances are
 * tested. Delaying both ways, it stands for a wide-area round trip (bench/src/wan-window-probe.ts).
 */
import * as net from "node:net";

export interface DelayingProxy {
  /** The proxy's URL: the target's scheme, 127.0.0.1:<port>. */
  url: string;
  close(): Promise<void>;
}

export async function startDelayingProxy(targetUrl: string, delayMs: number, opts: { answers?: boolean } = {}): Promise<DelayingProxy> {
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
    if (opts.answers) {
      upstream.on("data", (chunk) => setTimeout(() => client.destroyed || client.write(chunk), delayMs));
      upstream.on("end", () => setTimeout(() => client.end(), delayMs));
    } else upstream.pipe(client);
    client.on("close", () => setTimeout(() => upstream.destroy(), delayMs));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `${target.protocol}//127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
