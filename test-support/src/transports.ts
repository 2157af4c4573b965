/**
 * The three protocols a sealpost server speaks, as connect-es transports, so a test can run
 * the same calls over each.
 */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

export type ProtocolName = "connect-h1" | "connect-h2" | "grpc" | "grpc-web";

export const allProtocols: ProtocolName[] = ["connect-h1", "connect-h2", "grpc", "grpc-web"];

export function transportFor(protocol: ProtocolName, baseUrl: string): Transport {
  switch (protocol) {
    case "connect-h1":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false });
    case "connect-h2":
      return createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true });
    case "grpc":
      return createGrpcTransport({ baseUrl });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true });
  }
}
