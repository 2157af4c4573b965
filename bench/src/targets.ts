/**
 * The performance targets of the project (docs/BENCHMARKS.md shows each, met or missed), in order. Benchmarks tag the
 * figure that answers a row with `target.row` set to the row's id.
 */
import type { Figure } from "./result.js";

export interface TargetRow {
  id: string;
  /** Answered by the peer benchmark, which is skipped where ejabberd is not installed. */
  peer?: boolean;
  figure: string;
  target: string;
  /** The measured figure against the target itself, e.g. "0.86 of the target" or "8.1x the limit". */
  versus: (f: Figure) => string;
}

const atLeast = (x: number) => `${x.toFixed(2)} of the target`;
const atMost = (x: number) => `${x.toFixed(2)}x the limit`;
const ofRatio = (min: number) => (f: Figure) => atLeast((f.ratio ?? 0) / min);

export const TARGET_ROWS: TargetRow[] = [
  {
    id: "steady_1to1",
    figure: "1:1 encrypt+decrypt 1 KiB, steady state, node:crypto provider",
    target: "at least 3x libsignal-client, same run",
    versus: ofRatio(3),
  },
  {
    id: "ping_pong",
    figure: "1:1 ping-pong (DH ratchet every turn) with post-quantum ratchet steps (version 2 sessions)",
    target: "at least libsignal-client's rate, same run",
    versus: ofRatio(1),
  },
  { id: "session_setup", figure: "session setup incl. PQ KEM", target: "at least libsignal-client's rate, same run", versus: ofRatio(1) },
  { id: "group_encrypt", figure: "sender-key group encrypt 1 KiB", target: "at least libsignal-client's rate, same run", versus: ofRatio(1) },
  { id: "send_routed", figure: "server-routed messages/s (1 KiB)", target: "at least 70% of raw JetStream publish, same NATS, same run", versus: ofRatio(0.7) },
  {
    id: "sealed_send_routed",
    figure: "sealed sends (SendSealed, no token) beside Send, same server, 1 KiB",
    target: "not slower than Send, same run (>= 0.95x: the box's noise)",
    versus: ofRatio(0.95),
  },
  {
    id: "session_routed",
    figure: "routed msg/s over Session streams, one process, 1 KiB, 8 -> 8 online",
    target: "at least 12,000 msg/s",
    versus: (f) => atLeast(f.value / 12_000),
  },
  {
    id: "latency_1k",
    figure: "end-to-end latency at 1k msg/s",
    target: "p50 < 2 ms, p99 < 5 ms on loopback",
    versus: (f) => `${f.name.endsWith("p50") ? "p50" : "p99"} ${atMost(f.value / (f.name.endsWith("p50") ? 2 : 5))}`,
  },
  {
    id: "deliveries_at_saturation",
    figure: "deliveries/s at saturation (1,024 unary Sends in flight, 1 KiB, 8 online receivers)",
    target: "at least 0.9x the Sends accepted in the same window",
    versus: ofRatio(0.9),
  },
  { id: "reconnect_catchup", figure: "reconnect with catch-up (10 pending each)", target: "at least 1,000 devices/s", versus: (f) => atLeast(f.value / 1000) },
  {
    id: "per_core_vs_peer",
    peer: true,
    figure: "routed msg per server-side core-second, beside ejabberd (8 -> 8 online, 1 KiB, one stream per device: Session / XMPP)",
    target: "at least ejabberd's, same run",
    versus: ofRatio(1),
  },
  {
    id: "offline_vs_peer",
    peer: true,
    figure: "offline store: msg/s to devices that are not connected, beside ejabberd (1 KiB)",
    target: "at least ejabberd's, same run",
    versus: ofRatio(1),
  },
  {
    id: "catchup_vs_peer",
    peer: true,
    figure: "reconnect with catch-up (10 pending each), beside ejabberd",
    target: "at least ejabberd's, same run",
    versus: ofRatio(1),
  },
  {
    id: "idle_stream_kib",
    figure: "RSS per idle Receive stream (shared connections; one connection each)",
    target: "at most 25 KiB",
    versus: (f) => atMost(f.value / 25),
  },
  { id: "idle_streams_rss", figure: "10k idle receive streams", target: "server RSS < 300 MB", versus: (f) => atMost(f.value / 300) },
  {
    id: "metrics_overhead",
    figure: "cost of metrics (routed msg per server-side core-second, Session load, on vs off)",
    target: "under 5%",
    versus: (f) => atMost(f.value / 5),
  },
];
