/**
 * Session scenarios (conformance/client-cases/*.yaml): devices live on the client under test
 * ("sut") or on the reference TypeScript client ("ref"); messages are encrypted by one and
 * decrypted by the other, so a pass proves wire interoperability, not self-consistency.
 *
 * Steps:
 *   device:  { handle, on: sut|ref, account, device_id, one_time_prekeys? }
 *   send:    { from, to: [handles], text, hold? }   encrypt once for every recipient; unless
 *            `hold` names it, deliver to each at once and check the decrypted content
 *   deliver: { message, to, expect?: ok|rejected }  deliver a held message (reordering, replay)
 *   exchange: { between: [a, b], messages, kem_from?: [handles] }  `messages` texts, alternating
 *            a -> b and b -> a, each delivered at once; with `kem_from`, each named device must
 *            have sent at least one entry carrying a post-quantum ratchet step (a KEM ciphertext)
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  CreateDeviceRequestSchema,
  DecryptRequestSchema,
  EncryptRequestSchema,
  HarnessErrorKind,
  type CreateDeviceResponse,
} from "@sealpost/gen/sealpost/conformance/v1/client_harness_pb.js";
import { ContentSchema } from "@sealpost/gen/sealpost/envelope/v1/content_pb.js";
import { DeviceEnvelopeSchema } from "@sealpost/gen/sealpost/envelope/v1/device_envelope_pb.js";
import { KeyBundleSchema, type KeyBundle } from "@sealpost/gen/sealpost/directory/v1/prekeys_pb.js";
import { randomBytes } from "node:crypto";
import { ClientCheckFailure, expectOk, hex, type ClientCase, type ClientContext } from "./client-case.js";
import type { Harness } from "./harness-client.js";

interface DeviceState {
  handle: string;
  /** The handle on the wire: unique per scenario run, as one harness serves every case. */
  wire: string;
  on: Harness;
  side: "sut" | "ref";
  address: { accountId: string; deviceId: number };
  published: CreateDeviceResponse;
  unusedOneTime: number;
}

interface Held {
  from: string;
  sharedBody: Uint8Array;
  entries: Map<string, Uint8Array>;
  content: Uint8Array;
  channel: Map<string, bigint>;
}

type Step = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

class Scenario {
  readonly devices = new Map<string, DeviceState>();
  readonly sessions = new Set<string>();
  readonly counters = new Map<string, bigint>();
  readonly held = new Map<string, Held>();
  readonly id = randomBytes(6).toString("hex");
  constructor(readonly ctx: ClientContext) {}

  device(name: string): DeviceState {
    const d = this.devices.get(name);
    if (!d) throw new Error(`unknown device "${name}"`);
    return d;
  }

  bundle(d: DeviceState): KeyBundle {
    const otp = d.published.oneTimePrekeys[d.unusedOneTime];
    if (otp) d.unusedOneTime++;
    return create(KeyBundleSchema, {
      identity: d.published.identity,
      signedPrekey: d.published.signedPrekey,
      kemPrekey: d.published.kemPrekey,
      oneTimePrekey: otp,
    });
  }

  async step(s: Step): Promise<void> {
    if (s.device) {
      const a = s.device;
      const side = a.on === "ref" ? "ref" : "sut";
      const on = side === "ref" ? this.ctx.ref : this.ctx.sut;
      const address = { accountId: String(a.account), deviceId: Number(a.device_id ?? 1) };
      const wire = `${this.id}/${a.handle}`;
      const published = await expectOk(
        on,
        {
          case: "createDevice",
          value: create(CreateDeviceRequestSchema, {
            handle: wire,
            address,
            name: a.handle,
            signedPrekeyId: 1,
            kemPrekeyId: 1,
            oneTimePrekeyFirstId: 1,
            oneTimePrekeyCount: Number(a.one_time_prekeys ?? 3),
          }),
        },
        "createDevice",
      );
      this.devices.set(a.handle, { handle: a.handle, wire, on, side, address, published, unusedOneTime: 0 });
      return;
    }
    if (s.send) {
      const a = s.send;
      const from = this.device(a.from);
      const to: DeviceState[] = (a.to as string[]).map((t) => this.device(t));
      const messageId = new Uint8Array(randomBytes(16));
      const content = toBinary(
        ContentSchema,
        create(ContentSchema, {
          messageId,
          sentAtMs: BigInt(Date.now()),
          conversation: { kind: { case: "accountId", value: to[0].address.accountId } },
          body: { case: "text", value: { body: String(a.text) } },
        }),
      );
      const recipients = to.map((t) => ({ address: t.address, bundle: this.sessions.has(`${from.handle}->${t.handle}`) ? undefined : this.bundle(t) }));
      const enc = await expectOk(
        from.on,
        { case: "encrypt", value: create(EncryptRequestSchema, { handle: from.wire, recipients, content, messageId }) },
        "encrypt",
      );
      if (enc.entries.length !== to.length) throw new ClientCheckFailure(`encrypt: expected ${to.length} entries, got ${enc.entries.length}`);
      const held: Held = { from: from.handle, sharedBody: enc.sharedBody, entries: new Map(), content, channel: new Map() };
      to.forEach((t, i) => {
        const e = enc.entries[i];
        if (e.address?.accountId !== t.address.accountId || e.address?.deviceId !== t.address.deviceId)
          throw new ClientCheckFailure(
            `encrypt: entry ${i} is for ${e.address?.accountId}/${e.address?.deviceId}, expected ${t.address.accountId}/${t.address.deviceId}`,
          );
        held.entries.set(t.handle, e.entry);
        const key = `${from.handle}->${t.handle}`;
        this.sessions.add(key);
        const n = (this.counters.get(key) ?? 0n) + 1n;
        this.counters.set(key, n);
        held.channel.set(t.handle, n);
      });
      if (a.hold) this.held.set(String(a.hold), held);
      else for (const t of to) await this.deliver(held, t, "ok");
      return;
    }
    if (s.exchange) {
      const [a, b] = s.exchange.between as [string, string];
      const kemSent = new Map<string, number>();
      for (let i = 0; i < Number(s.exchange.messages); i++) {
        const [from, to] = i % 2 === 0 ? [a, b] : [b, a];
        const name = `${this.id}/exchange/${i}`;
        await this.step({ send: { from, to: [to], text: `exchange ${i}`, hold: name } });
        const held = this.held.get(name)!;
        this.held.delete(name);
        if (carriesKemStep(held.entries.get(to)!)) kemSent.set(from, (kemSent.get(from) ?? 0) + 1);
        await this.deliver(held, this.device(to), "ok");
      }
      for (const d of (s.exchange.kem_from ?? []) as string[]) {
        if (!kemSent.get(d))
          throw new ClientCheckFailure(`${this.device(d).side}:${d} sent no entry with a post-quantum ratchet step in ${s.exchange.messages} messages`);
      }
      return;
    }
    if (s.deliver) {
      const a = s.deliver;
      const held = this.held.get(String(a.message));
      if (!held) throw new Error(`no held message "${a.message}"`);
      await this.deliver(held, this.device(String(a.to)), a.expect === "rejected" ? "rejected" : "ok");
      return;
    }
    throw new Error(`unknown client step ${JSON.stringify(s)}`);
  }

  async deliver(m: Held, to: DeviceState, expect: "ok" | "rejected"): Promise<void> {
    const entry = m.entries.get(to.handle);
    if (!entry) throw new Error(`message from ${m.from} has no entry for ${to.handle}`);
    const from = this.device(m.from);
    const req = create(DecryptRequestSchema, {
      handle: to.wire,
      sender: from.address,
      sharedBody: m.sharedBody,
      entry,
      senderIdentity: from.published.identity,
    });
    const where = `${from.side}:${from.handle} -> ${to.side}:${to.handle}`;
    if (expect === "rejected") {
      const res = await to.on.call({ case: "decrypt", value: req });
      if (res.kind.case !== "error" || res.kind.value.kind !== HarnessErrorKind.REJECTED) {
        throw new ClientCheckFailure(
          `${where}: expected the entry to be REJECTED, got ${res.kind.case === "error" ? HarnessErrorKind[res.kind.value.kind] : "a decryption"}`,
        );
      }
      return;
    }
    let dec: Awaited<ReturnType<typeof expectOk>>;
    try {
      dec = await expectOk(to.on, { case: "decrypt", value: req }, "decrypt");
    } catch (err) {
      throw new ClientCheckFailure(`${where}: ${(err as Error).message}`);
    }
    this.sessions.add(`${to.handle}->${from.handle}`);
    const got = fromBinary(ContentSchema, dec.content);
    const want = fromBinary(ContentSchema, m.content);
    if (hex(got.messageId) !== hex(want.messageId)) throw new ClientCheckFailure(`${where}: message_id ${hex(got.messageId)} != ${hex(want.messageId)}`);
    const text = (c: typeof got) => (c.body.case === "text" ? c.body.value.body : `(${c.body.case})`);
    if (text(got) !== text(want)) throw new ClientCheckFailure(`${where}: text ${JSON.stringify(text(got))} != ${JSON.stringify(text(want))}`);
    const seq = m.channel.get(to.handle);
    if (dec.channelSequence !== seq) throw new ClientCheckFailure(`${where}: channel_sequence ${dec.channelSequence}, expected ${seq}`);
  }
}

/** Whether a device entry's RatchetMessage carries a KEM ciphertext (a post-quantum ratchet step). */
function carriesKemStep(entry: Uint8Array): boolean {
  const env = fromBinary(DeviceEnvelopeSchema, entry);
  const m = env.kind.case === "ratchet" ? env.kind.value : env.kind.case === "prekey" ? env.kind.value.message : undefined;
  return (m?.kemCiphertext.length ?? 0) > 0;
}

/** Every scenario of every YAML file in dir. */
export function scenarioCases(dir: string): ClientCase[] {
  let files: string[];
  try {
    files = readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .sort();
  } catch {
    return [];
  }
  return files.flatMap((f) => {
    const doc = parse(readFileSync(join(dir, f), "utf8")) as { cases: { name: string; checks: string; steps: Step[] }[] };
    return doc.cases.map((c) => ({
      name: c.name,
      checks: c.checks,
      file: join(dir, f),
      run: async (ctx: ClientContext) => {
        const sc = new Scenario(ctx);
        for (const s of c.steps) await sc.step(s);
      },
    }));
  });
}
