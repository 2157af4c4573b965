/**
 * What the CLI says about a message it queued: `sent` only on the event that says so, and a
 * `queued` that names why the message is still waiting (unreachable server, or the reason
 * its last attempt failed), so exit code 75 never comes without a reason it knows.
 */
import { describe, expect, it } from "vitest";
import { CliError, EXIT_QUEUED, OutcomeTracker, report } from "../src/cli/send-outcome.js";
import type { Messenger } from "../src/messenger/messenger.js";
import type { MessengerEvent } from "../src/core/events.js";

function tracked() {
  let listener: (e: MessengerEvent) => void = () => {};
  const progress: string[] = [];
  const m = { on: (l: (e: MessengerEvent) => void) => ((listener = l), () => {}) } as unknown as Messenger;
  const tracker = new OutcomeTracker(m, (line) => progress.push(line));
  return { tracker, emit: (e: MessengerEvent) => listener(e), progress };
}

const queuedMessage = (o: Parameters<typeof report>[0], id = "m1") => {
  try {
    report(o, id, "message", () => {});
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    expect((e as CliError).exitCode).toBe(EXIT_QUEUED);
    return (e as CliError).message;
  }
  throw new Error("not queued");
};

describe("OutcomeTracker", () => {
  it("queued after a failed attempt names the attempt's reason", async () => {
    const { tracker, emit } = tracked();
    emit({ type: "send-retry", messageId: "m1", label: "text", reason: "ConnectError: [deadline_exceeded] no answer from the server within 20 s" });
    const o = await tracker.wait("m1", 20);
    expect(o).toMatchObject({ kind: "queued" });
    expect(queuedMessage(o)).toMatch(
      /^queued m1; not sent yet \(last attempt: ConnectError: \[deadline_exceeded\] no answer from the server within 20 s\)\. It stays/,
    );
  });

  it("an unreachable server is the reason it names first; without any reason it says none", async () => {
    const { tracker, emit, progress } = tracked();
    emit({ type: "send-retry", messageId: "m1", label: "text", reason: "Error: ECONNREFUSED" });
    emit({ type: "connection", state: "offline", error: "connect ECONNREFUSED 127.0.0.1:1" });
    expect(progress).toEqual(["(server unreachable: connect ECONNREFUSED 127.0.0.1:1; retrying)"]);
    expect(queuedMessage(await tracker.wait("m1", 20))).toMatch(/^queued m1; not sent yet \(server unreachable: connect ECONNREFUSED 127\.0\.0\.1:1\)\./);
    expect(queuedMessage(await tracked().tracker.wait("m2", 20), "m2")).toMatch(/^queued m2; not sent yet\. It stays/);
  });

  it("sent only on the sent event, with what it says", async () => {
    const { tracker, emit } = tracked();
    const waiting = tracker.wait("m1", 5000);
    emit({ type: "send-retry", messageId: "m1", label: "text", reason: "busy" });
    emit({ type: "sent", messageId: "m1", label: "text", serverTimestampMs: 1, devices: 2, sealed: false });
    expect(await waiting).toEqual({ kind: "sent", devices: 2, sealed: false, unsealed: undefined });
  });
});
