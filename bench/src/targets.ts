/**
 * The rows of the DESIGN.md "Performance targets" table, in its order. Benchmarks tag the
 * figure that answers a row with `target.row` set to the row's id.
 */
export interface TargetRow {
  id: string;
  figure: string;
  target: string;
}

export const TARGET_ROWS: TargetRow[] = [
  { id: "steady_1to1", figure: "1:1 encrypt+decrypt 1 KiB, steady state, node:crypto provider", target: "at least 3x libsignal-client, same run" },
  { id: "ping_pong", figure: "1:1 ping-pong (DH ratchet every turn)", target: "at least libsignal-client's rate, same run" },
  { id: "session_setup", figure: "session setup incl. PQ KEM", target: "at least libsignal-client's rate, same run" },
  { id: "group_encrypt", figure: "sender-key group encrypt 1 KiB", target: "at least libsignal-client's rate, same run" },
  { id: "send_routed", figure: "server-routed messages/s (1 KiB)", target: "at least 70% of raw JetStream publish, same NATS, same run" },
  { id: "latency_1k", figure: "end-to-end latency at 1k msg/s", target: "p50 < 2 ms, p99 < 10 ms on loopback" },
  { id: "reconnect_catchup", figure: "reconnect with catch-up (10 pending each)", target: "at least 1,000 devices/s" },
  { id: "idle_streams_rss", figure: "10k idle receive streams", target: "server RSS < 500 MB" },
];
