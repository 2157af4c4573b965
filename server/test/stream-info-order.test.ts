/**
 * The Acker purges live-pushed mail after one stream info with a subject filter, trusting
 * that nats-server takes the stream's state (its last sequence) before it counts the
 * subject: then every message at or below the answer's last sequence is in the count, and a
 * count that matches what the server knows proves no unknown mail below the purge bound.
 * Were the order reversed, a message stored between the two could be in the sequence range
 * and missing from the count, and a match could hide undelivered mail (a purge would delete
 * it). This holds the nats-server in use to the order: while one connection publishes to two
 * alternating subjects, another asks for the count of one of them, many times. A count below
 * what the answer's last sequence implies would show the reversed order; counts above it
 * (messages stored between state and count) show this order at work.
 */
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { expect, it } from "vitest";
import { startTestNats } from "@sealpost/test-support";

// The Acker's filter names the account's devices (a wildcard); the literal one is kept as the reference.
it.each(["order.*", "order.b"])(
  "nats-server counts a subject after it takes the stream state, in one stream info answer (filter %s)",
  async (filter) => {
    const nats = await startTestNats({ forceOwn: true });
    const publisher = await connect({ servers: nats.url });
    const asker = await connect({ servers: nats.url });
    let publishing = true;
    try {
      const jsm = await jetstreamManager(publisher);
      await jsm.streams.add({ name: "ORDER_PROBE", subjects: ["order.*"] });
      const data = new Uint8Array(64);
      const published = (async () => {
        // Odd sequences are order.a, even ones order.b.
        for (let i = 0; publishing; i++) {
          publisher.publish(i % 2 ? "order.b" : "order.a", data);
          if (i % 64 === 63) await publisher.flush();
        }
      })();
      const seen = { above: 0, below: 0, exact: 0 };
      const enc = new TextEncoder();
      const until = Date.now() + 20_000;
      while (Date.now() < until && (seen.above < 20 || seen.exact < 20)) {
        const answer = await asker.request("$JS.API.STREAM.INFO.ORDER_PROBE", enc.encode(JSON.stringify({ subjects_filter: filter })), { timeout: 5000 });
        const state = answer.json<{ state: { last_seq: number; subjects?: Record<string, number> } }>().state;
        const counted = state.subjects?.["order.b"] ?? 0;
        const upToLast = Math.floor(state.last_seq / 2);
        if (counted > upToLast) seen.above++;
        else if (counted < upToLast) seen.below++;
        else seen.exact++;
      }
      publishing = false;
      await published;
      expect(seen.below).toBe(0);
      // The race was really run: messages were stored between the state and the count.
      expect(seen.above).toBeGreaterThan(0);
    } finally {
      publishing = false;
      await publisher.close();
      await asker.close();
      await nats.stop();
    }
  },
  60_000,
);
