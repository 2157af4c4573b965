/**
 * The reference side of the server benchmark: the same operations straight on JetStream, on
 * the same nats-server, from this process over its own connection. The stream copies the
 * mailbox stream's configuration (file storage, limits, duplicate window) under its own
 * subjects, so storage settings are alike.
 */
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { mailboxStreamName } from "@sealpost/server/nats";
import { untilNextDue } from "../open-loop.js";

export const RAW_STREAM = "BENCH_RAW";
export const rawSubject = (device: number) => `bench.raw.${device}`;

export interface RawJetStream {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** How many mailbox streams (partitions) the deployment has. */
  partitions: number;
  /** Messages stored in all mailbox streams together. */
  mailboxMessages(): Promise<{ partitions: number; messages: number }>;
  purge(): Promise<void>;
  close(): Promise<void>;
}

/** Connects and creates BENCH_RAW like SP_MAILBOX_0 (call after a sealpost server made its layout). */
export async function openRawJetStream(natsUrl: string): Promise<RawJetStream> {
  // Like the server's connection (no per-request async stack traces).
  const nc = await connect({ servers: natsUrl, name: "bench-raw", noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const template = (await jsm.streams.info(mailboxStreamName(0))).config;
  const { name: _n, subjects: _s, ...rest } = template;
  await jsm.streams.add({ ...rest, name: RAW_STREAM, subjects: ["bench.raw.>"] });
  let partitions = 0;
  while (
    await jsm.streams.info(mailboxStreamName(partitions)).then(
      () => true,
      () => false,
    )
  )
    partitions++;
  return {
    nc,
    js,
    jsm,
    partitions,
    mailboxMessages: async () => {
      let messages = 0;
      for (let p = 0; p < partitions; p++) messages += (await jsm.streams.info(mailboxStreamName(p))).state.messages;
      return { partitions, messages };
    },
    purge: async () => {
      await jsm.streams.purge(RAW_STREAM);
    },
    close: async () => {
      await jsm.streams.delete(RAW_STREAM).catch(() => {});
      await nc.drain().catch(() => nc.close());
    },
  };
}

/** Async publish of `size`-byte messages with `inFlight` acks outstanding, for `ms`: msg/s. */
export async function rawPublishRate(raw: RawJetStream, size: number, inFlight: number, ms: number, subjects = 8): Promise<number> {
  const data = new Uint8Array(size).fill(7);
  let n = 0;
  let i = 0;
  const start = performance.now();
  const end = start + ms;
  const worker = async () => {
    while (performance.now() < end) {
      await raw.js.publish(rawSubject(i++ % subjects), data);
      n++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return (n * 1000) / (performance.now() - start);
}

/** Open-loop publish at `rate` msg/s for `ms`: publish-to-ack latencies (ms) from the intended send time. */
export async function rawPublishLatencies(
  raw: RawJetStream,
  rate: number,
  ms: number,
  maxOutstanding: number,
): Promise<{ latencies: number[]; saturated: boolean }> {
  const data = new Uint8Array(1024).fill(7);
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  let outstanding = 0;
  let saturated = false;
  const t0 = performance.now();
  const total = Math.floor((rate * ms) / 1000);
  let issued = 0;
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
    while (issued < due) {
      if (outstanding >= maxOutstanding) {
        saturated = true;
        break;
      }
      const intended = t0 + (issued * 1000) / rate;
      outstanding++;
      pending.push(
        raw.js.publish(rawSubject(issued % 8), data).then(() => {
          outstanding--;
          latencies.push(performance.now() - intended);
        }),
      );
      issued++;
    }
    if (saturated) break;
    await untilNextDue(t0, issued, rate);
  }
  await Promise.all(pending);
  return { latencies, saturated };
}

/** Puts `pending` messages on each of `devices` subjects (the catch-up backlog). */
export async function rawFill(raw: RawJetStream, firstDevice: number, devices: number, pending: number): Promise<void> {
  const data = new Uint8Array(1024).fill(7);
  const jobs: Promise<unknown>[] = [];
  for (let d = firstDevice; d < firstDevice + devices; d++) for (let k = 0; k < pending; k++) jobs.push(raw.js.publish(rawSubject(d), data));
  await Promise.all(jobs);
}

/**
 * What a reconnecting device costs on JetStream alone: direct gets next_by_subj from the
 * cursor until none is left, then delete what was read. `concurrency` devices at a time.
 */
export async function rawCatchUp(raw: RawJetStream, firstDevice: number, devices: number, concurrency: number): Promise<{ perSec: number; messages: number }> {
  let next = firstDevice;
  let messages = 0;
  const start = performance.now();
  const worker = async () => {
    for (let d = next++; d < firstDevice + devices; d = next++) {
      let cursor = 0;
      const seqs: number[] = [];
      for (;;) {
        const m = await raw.jsm.direct.getMessage(RAW_STREAM, { next_by_subj: rawSubject(d), seq: cursor + 1 });
        if (!m) break;
        cursor = m.seq;
        seqs.push(m.seq);
      }
      messages += seqs.length;
      await Promise.all(seqs.map((s) => raw.jsm.streams.deleteMessage(RAW_STREAM, s, false)));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { perSec: (devices * 1000) / (performance.now() - start), messages };
}

/** Mail of devices that never connect (`sp.mbox.<p>.benchbg.<n>`), straight into the mailbox streams. */
const backgroundSubject = (partition: number, n: number) => `sp.mbox.${partition}.benchbg.${n}`;

/** Stores `count` 1 KiB messages of other devices, spread over every mailbox stream. */
export async function fillBackgroundMail(raw: RawJetStream, first: number, count: number): Promise<void> {
  const data = new Uint8Array(1024).fill(5);
  let next = 0;
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      for (let i = next++; i < count; i = next++) {
        const n = first + i;
        await raw.js.publish(backgroundSubject(n % raw.partitions, n), data);
      }
    }),
  );
}

/** Removes what fillBackgroundMail stored. */
export async function purgeBackgroundMail(raw: RawJetStream): Promise<void> {
  for (let p = 0; p < raw.partitions; p++) await raw.jsm.streams.purge(mailboxStreamName(p), { filter: `sp.mbox.${p}.benchbg.*` });
}
