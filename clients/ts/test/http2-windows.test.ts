/**
 * The Node transport's HTTP/2 receive windows, as a server sees them: every stream opens with
 * a 1 MiB window (SETTINGS_INITIAL_WINDOW_SIZE) and the connection's window is raised to 8 MiB,
 * so a device's pushed mail is not held to HTTP/2's default 64 KiB per round trip.
 */
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createClient } from "@connectrpc/connect";
import { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import { defaultTransport } from "../src/platform/node.js";
import { CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES } from "../src/platform/http2-windows.js";

let server: http2.Http2Server;
let baseUrl: string;
const sessions: http2.ServerHttp2Session[] = [];

beforeAll(async () => {
  server = http2.createServer();
  server.on("session", (s) => sessions.push(s));
  // Any unary call: answered with an empty message (Connect, binary).
  server.on("stream", (stream) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/proto" });
      stream.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const s of sessions) s.destroy();
  await new Promise((r) => server.close(r));
});

describe("HTTP/2 receive windows of the Node transport", () => {
  it("opens streams with a 1 MiB window and raises the connection's to 8 MiB", async () => {
    const client = createClient(DeliveryService, defaultTransport(baseUrl, []));
    await client.ack({ sequences: [1n] });
    expect(sessions).toHaveLength(1);
    const session = sessions[0];
    expect(session.remoteSettings.initialWindowSize).toBe(STREAM_WINDOW_BYTES);
    // What the server may still send on the connection: the client's window, once its WINDOW_UPDATE is in.
    await vi.waitFor(() => expect(session.state.remoteWindowSize).toBe(CONNECTION_WINDOW_BYTES));
    // A second call reuses the connection and does not raise the window again.
    await client.ack({ sequences: [2n] });
    expect(sessions).toHaveLength(1);
    expect(session.state.remoteWindowSize).toBe(CONNECTION_WINDOW_BYTES);
  });
});
