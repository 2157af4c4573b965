/**
 * Counters of one Messenger, from its own events: what a status display or a monitor reads
 * (Messenger.stats()). Counts and states only, never contents or addresses.
 */
import type { MessengerEvent } from "../core/events.js";

export interface MessengerStats {
  /** Messages and receipts waiting in the outbox (durable: survives restarts). */
  outboxDepth: number;
  /** Since this Messenger was opened: */
  sent: number;
  /** Attempts that will be retried (server unreachable or overloaded). */
  sendRetries: number;
  failed: number;
  received: number;
  /** Processing time (local clock) minus the server's store time of the last message received. */
  receiveLagMs: number | undefined;
  connection: "connecting" | "online" | "offline" | "stopped";
  /** Why the connection is offline or stopped. */
  lastError: string | undefined;
  /** The key transparency log as this device knows it (undefined before it verified a list). */
  transparency?: { logKey: string; treeSize: number; signedAtMs: number; monitoredSize: number | undefined };
}

export class MessengerCounters {
  private sent = 0;
  private sendRetries = 0;
  private failed = 0;
  private connection: MessengerStats["connection"] = "offline";
  private lastError: string | undefined;

  count(e: MessengerEvent): void {
    switch (e.type) {
      case "sent":
        this.sent++;
        return;
      case "send-retry":
        this.sendRetries++;
        return;
      case "send-failed":
        this.failed++;
        return;
      case "connection":
        if (this.connection === "stopped") return;
        this.connection = e.state;
        this.lastError = e.state === "online" ? undefined : (e.error ?? this.lastError);
        return;
      case "stopped":
        this.connection = "stopped";
        this.lastError = e.detail;
        return;
      case "device-revoked":
        if (e.self) [this.connection, this.lastError] = ["stopped", "this device was revoked"];
        return;
    }
  }

  snapshot(): Omit<MessengerStats, "outboxDepth" | "received" | "receiveLagMs"> {
    return { sent: this.sent, sendRetries: this.sendRetries, failed: this.failed, connection: this.connection, lastError: this.lastError };
  }
}
