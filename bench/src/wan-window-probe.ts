/**
 * What HTTP/2 flow-control windows cost over a wide-area round trip: a server of its own on
 * its own nats-server, reached through a TCP proxy that delays every chunk by --delay ms each
 * way (loopback has no round trip to speak of). Measures, through the proxy:
 *   - a Session stream's pipelined Sends (256 in flight, 1 KiB): sends answered/s;
 *   - Sends of a 256 KiB body one at a time: ms per Send;
 *   - a backlog of 2,000 messages (1 KiB) read through the delay with HTTP/2's default receive
 *     windows and with the ones clients/ts opens (@sealpost/client/http2-windows): ms to Drained.
 * For the first two the receiving device reads directly (loopback): only the upload crosses the delay.
 *
 *   npx tsx bench/src/wan-window-probe.ts [--delay 25] [--seconds 3]
 */
import * as http2 from "node:http2";
import { parseArgs } from "node:util";
import { createNodeProvider } from "@sealpost/client/crypto";
import { startDelayingProxy, startTestNats } from "@sealpost/test-support";
import { createBenchDevices } from "./server/bench-accounts.js";
import { MessageIds, send, sendRequest } from "./server/delivery-load.js";
import { Http2Pool } from "./server/raw-http2.js";
import { RawUnaryPool } from "./server/raw-unary.js";
import { median } from "./result.js";
import { startBenchServer } from "./server/server-process.js";
import { BenchSession } from "./server/session-load.js";

const { values } = parseArgs({ options: { delay: { type: "string", default: "25" }, seconds: { type: "string", default: "3" } } });
const DELAY_MS = Number(values.delay);
const SECONDS = Number(values.seconds);

const nats = await startTestNats({ forceOwn: true });
const server = await startBenchServer({ label: "wan", natsUrl: nats.url });
const proxy = await startDelayingProxy(server.url, DELAY_MS, { answers: true });
const viaProxy = proxy.url;
try {
  const provider = createNodeProvider();
  const [sender, receiver, narrowReader, wideReader] = await createBenchDevices(provider, server.url, `wan-${Date.now().toString(36)}`, 4);
  const ids = new MessageIds();
  const direct = new Http2Pool(server.url, 1);
  const inbox = new BenchSession(direct.at(0), receiver, ids);
  await inbox.receive();

  // Session sends through the delay.
  const far = new Http2Pool(viaProxy, 1);
  const session = new BenchSession(far.at(0), sender, ids);
  const body = new Uint8Array(1024).fill(7);
  const end = performance.now() + SECONDS * 1000;
  let answered = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await session.send(sendRequest(ids.make(ids.next++), body, [receiver]));
      answered++;
    }
  };
  const t = performance.now();
  await Promise.all(Array.from({ length: 256 }, worker));
  const sessionRate = (answered * 1000) / (performance.now() - t);

  // Large bodies, one Send at a time, through the delay.
  const unary = new RawUnaryPool(viaProxy, 1);
  const big = new Uint8Array(256 * 1024).fill(5);
  await send(unary, sender, sendRequest(ids.make(ids.next++), big, [receiver])); // connection up
  const times: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    await send(unary, sender, sendRequest(ids.make(ids.next++), big, [receiver]));
    times.push(performance.now() - t0);
  }
  console.log(
    `delay ${DELAY_MS} ms each way: Session sends ${Math.round(sessionRate)}/s (256 in flight, 1 KiB); 256 KiB Send ${median(times).toFixed(0)} ms (median of 10, one at a time)`,
  );
  // A backlog read through the delay, default windows against wide ones.
  const direct64 = new RawUnaryPool(server.url, 4);
  const BACKLOG = 2000;
  for (const reader of [narrowReader, wideReader]) {
    let k = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (k < BACKLOG) {
          k++;
          await send(direct64, sender, sendRequest(ids.make(ids.next++), body, [reader]));
        }
      }),
    );
  }
  const catchUpMs = async (conn: http2.ClientHttp2Session, reader: typeof receiver) => {
    const s = new BenchSession(conn, reader, ids);
    const t0 = performance.now();
    await s.receive();
    const ms = performance.now() - t0;
    await s.close();
    return ms;
  };
  const narrowConn = http2.connect(viaProxy); // HTTP/2's defaults: 64 KiB windows
  const narrowMs = await catchUpMs(narrowConn, narrowReader);
  const wideMs = await catchUpMs(far.at(0), wideReader);
  narrowConn.close();
  direct64.close();
  console.log(
    `delay ${DELAY_MS} ms each way: backlog of ${BACKLOG} x 1 KiB read in ${narrowMs.toFixed(0)} ms with 64 KiB windows, ${wideMs.toFixed(0)} ms with clients/ts's`,
  );
  await Promise.all([session.close(), inbox.close()]);
  unary.close();
  far.close();
  direct.close();
} finally {
  await proxy.close();
  await server.stop();
  await nats.stop();
}
