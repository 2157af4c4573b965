/**
 * The sealpost CLI binary (clients/ts/bin/sealpost.js) against a real server and nats-server,
 * checked the way a user meets it: every command says what really happened, with the reason
 * and an exit code (0 done, 1 failed, 2 usage, 75 queued); link codes expire and link once; a
 * command on a store whose `listen` is running is run by that listener (nothing replaced,
 * nothing lost); damaged store files are named; and the small things (revoke <account>/<id>,
 * download with captions, group labels, stdin, long piped output, bad --server URLs).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestNats, startTestServer, type TestNats } from "@sealpost/test-support";
import type { RunningServer } from "@sealpost/server";
import { createNodeProvider } from "../src/crypto/node-provider.js";
import { generateDeviceKeys } from "../src/directory/device-list-changes.js";
import { makeLinkCode, LINK_CODE_TTL_MS } from "../src/directory/link-code.js";

const bin = fileURLToPath(new URL("../bin/sealpost.js", import.meta.url));
let nats: TestNats;
let server: RunningServer;
let home: string;
const run = Date.now().toString(36);
const acct = (name: string) => `${name}-${run}`;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(store: string, args: string[], opts: { stdin?: string; server?: string } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, "--store", join(home, store), "--server", opts.server ?? server.url, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(opts.stdin ?? "");
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** `sealpost listen` in the background, its output collected. */
function listen(store: string): { lines: () => string; ready: () => Promise<void>; exited: Promise<number>; stop: () => Promise<number> } {
  const child = spawn(process.execPath, [bin, "--store", join(home, store), "--server", server.url, "listen"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number>((r) => child.on("close", (code) => r(code ?? -1)));
  return {
    lines: () => out,
    exited,
    ready: () => until(() => out.includes("(online)"), "listen online"),
    stop: async () => {
      child.kill("SIGINT");
      return exited;
    },
  };
}

// Generous: a CLI process under a loaded 2-core CI machine can take tens of seconds to start (tsx) and make its keys.
async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ok = (r: Result) => expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);

beforeAll(async () => {
  nats = await startTestNats();
  server = await startTestServer(nats.url);
  home = mkdtempSync(join(tmpdir(), "sealpost-cli-truth-"));
  for (const [store, name] of [
    ["alice", "alice"],
    ["bob", "bob"],
    ["carol", "carol"],
  ])
    ok(await cli(store, ["init", acct(name)]));
}, 120_000);
afterAll(async () => {
  await server?.close();
  await nats?.stop();
  if (home) rmSync(home, { recursive: true, force: true });
});

describe("sending says what happened", () => {
  it("sent only when stored; an unknown recipient, an oversized text and an unknown file recipient fail with the reason", async () => {
    const sent = await cli("alice", ["send", acct("bob"), "hello", "bob"]);
    ok(sent);
    expect(sent.stdout).toMatch(/^sent [0-9a-f]{32} \(stored for 1 device\)$/m);

    const nobody = await cli("alice", ["send", "nosuchuser", "hi"]);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toMatch(/no account "nosuchuser"/);
    expect(nobody.stdout).not.toMatch(/sent/);

    const big = await cli("alice", ["send", acct("bob"), "-"], { stdin: "x".repeat(300_000) });
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(/failed: .*resource_exhausted.*max_body_bytes is 262144/);

    writeFileSync(join(home, "photo.bin"), "pixels");
    const file = await cli("alice", ["send-file", "nosuchuser", join(home, "photo.bin")]);
    expect(file.code).toBe(1);
    expect(file.stderr + file.stdout).not.toMatch(/uploaded/);
    expect(file.stderr).toMatch(/no account "nosuchuser"/);

    const group = await cli("alice", ["group", "create", "trip", acct("bob"), "nosuchuser"]);
    expect(group.code).toBe(1);
    expect(group.stderr).toMatch(/no account "nosuchuser"/);
    expect((await cli("alice", ["group", "list"])).stdout).toMatch(/no groups/);
  }, 120_000);

  it("an unreachable server: progress on stderr, then `queued` with exit 75 after --timeout; the message goes out later", async () => {
    const r = await cli("carol", ["--timeout", "2", "send", acct("bob"), "later"], { server: "http://127.0.0.1:1" });
    expect(r.code).toBe(75);
    expect(r.stderr).toMatch(/server unreachable: .*ECONNREFUSED/);
    expect(r.stderr).toMatch(/queued [0-9a-f]{32}; not sent yet/);
    expect((await cli("carol", ["history", acct("bob")])).stdout).toMatch(/later \(queued\)/);
    const status = await cli("carol", ["--timeout", "2", "status"], { server: "http://127.0.0.1:1" });
    ok(status);
    expect(status.stdout).toMatch(/^connection: offline \(.*ECONNREFUSED.*\)$/m);
    expect(status.stdout).toMatch(/^outbox: 1 waiting$/m);
    // Online again: the next command sends what waited.
    ok(await cli("carol", ["send", acct("bob"), "now"]));
    await eventually(async () => /later \((sent|delivered|read)\)/.test((await cli("carol", ["history", acct("bob")])).stdout), "the queued message sent");
  }, 120_000);

  it("bad command lines are usage errors (exit 2) that name the problem", async () => {
    const url = await cli("alice", ["send", acct("bob"), "x"], { server: "not a url" });
    expect(url.code).toBe(2);
    expect(url.stderr).toMatch(/invalid server URL "not a url"/);
    const timeout = await cli("alice", ["--timeout", "soon", "send", acct("bob"), "x"]);
    expect(timeout.code).toBe(2);
    expect(timeout.stderr).toMatch(/--timeout takes a number of seconds/);
  });
});

async function eventually(check: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("sealed sending", () => {
  it("goes sealed once the recipient has written, says so, and says why when it falls back", async () => {
    ok(await cli("quinn", ["init", acct("quinn")]));
    ok(await cli("rosa", ["init", acct("rosa")]));
    const shown = await cli("rosa", ["sealed-access", "contacts"]);
    ok(shown);
    expect(shown.stdout).toBe("sealed mail to this device: contacts\n");
    const bad = await cli("rosa", ["sealed-access", "maybe"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('sealed-access takes off, contacts, anyone or rotate, not "maybe"');

    // Rosa writes first (Send: she has no key of Quinn's); her message carries her key.
    const first = await cli("rosa", ["send", acct("quinn"), "hi quinn"]);
    ok(first);
    expect(first.stdout).toMatch(/^sent [0-9a-f]{32} \(stored for 1 device\)$/m);
    const quinn = listen("quinn");
    await until(() => quinn.lines().includes("hi quinn"), "quinn receives rosa's message");
    await quinn.stop();
    const sealed = await cli("quinn", ["send", acct("rosa"), "hi rosa"]);
    ok(sealed);
    expect(sealed.stdout).toMatch(/^sent [0-9a-f]{32} \(stored for 1 device; sealed: the server was not told the sender\)$/m);

    // A rotated key: Quinn's next message is refused sealed and goes unsealed, saying why.
    const rotated = await cli("rosa", ["sealed-access", "rotate"]);
    ok(rotated);
    expect(rotated.stdout).toBe("sealed mail to this device: contacts\n");
    const afterRotation = await cli("quinn", ["send", acct("rosa"), "old key"]);
    ok(afterRotation);
    expect(afterRotation.stdout).toMatch(/not sealed: sealed send refused/);
    // Rosa writes again (her new key with it); then she turns sealed mail off.
    ok(await cli("rosa", ["send", acct("quinn"), "new key"]));
    const quinnAgain = listen("quinn");
    await until(() => quinnAgain.lines().includes("new key"), "quinn receives rosa's new key");
    await quinnAgain.stop();
    ok(await cli("rosa", ["sealed-access", "off"]));
    const unsealed = await cli("quinn", ["send", acct("rosa"), "still there?"]);
    ok(unsealed);
    expect(unsealed.stdout).toMatch(/^sent [0-9a-f]{32} \(stored for 1 device; not sealed: sealed send refused: the access key does not open account/m);
  }, 120_000);
});

describe("link codes link once and expire", () => {
  it("a used code is refused, and refused again after that device is revoked; an expired code is refused", async () => {
    const linking = spawn(process.execPath, [bin, "--store", join(home, "alice-laptop"), "--server", server.url, "link", acct("alice"), "--name", "laptop"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    linking.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const linkingDone = new Promise((r) => linking.on("close", r));
    await until(() => /link --code (\S+)/.test(out), "the link code");
    expect(out).toMatch(/--store/);
    expect(out).toMatch(/valid for 10 minutes, once/);
    const code = /link --code (\S+)/.exec(out)![1];
    const linked = await cli("alice", ["link", "--code", code]);
    ok(linked);
    await linkingDone;
    expect(out).toMatch(/linked: this device is .*\/2/);

    const again = await cli("alice", ["link", "--code", code]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already used/);

    ok(await cli("alice", ["revoke", `${acct("alice")}/2`]));
    const revokedAgain = await cli("alice", ["link", "--code", code]);
    expect(revokedAgain.code).toBe(1);
    expect(revokedAgain.stderr).toMatch(/was revoked; a revoked device is never linked again/);
    expect((await cli("alice", ["devices"])).stdout).not.toMatch(/\/2 /);
    const fromRevoked = await cli("alice-laptop", ["send", acct("bob"), "from a revoked device"]);
    expect(fromRevoked.code).toBe(1);
    expect(fromRevoked.stderr).toMatch(/revoked/);
    expect(fromRevoked.stdout).not.toMatch(/sent/);

    const p = createNodeProvider();
    const keys = await generateDeviceKeys(p, "old");
    const expired = await makeLinkCode(p, keys, acct("alice"), "old", Date.now() - LINK_CODE_TTL_MS - 1000);
    const late = await cli("alice", ["link", "--code", expired]);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/link code expired/);

    const notMine = await cli("alice", ["revoke", `${acct("bob")}/1`]);
    expect(notMine.code).toBe(1);
    expect(notMine.stderr).toMatch(/not a device of your account/);
  }, 120_000);
});

describe("history for a new device", () => {
  it("link --code ... --history sends the account's messages; the new device's listen imports them", async () => {
    ok(await cli("erin", ["init", acct("erin")]));
    ok(await cli("erin", ["send", acct("bob"), "written before the laptop"]));
    const linking = spawn(process.execPath, [bin, "--store", join(home, "erin-laptop"), "--server", server.url, "link", acct("erin"), "--name", "laptop"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    linking.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const linkingDone = new Promise((r) => linking.on("close", r));
    await until(() => /link --code (\S+)/.test(out), "the link code");
    const code = /link --code (\S+)/.exec(out)![1];
    const linked = await cli("erin", ["link", "--code", code, "--history"]);
    expect(linked.code, `${linked.stdout}\n${linked.stderr}`).toBe(0);
    expect(linked.stdout).toMatch(/history sent to .*\/2: 1 messages/);
    expect(linked.stderr).toMatch(/history: uploading/);
    await linkingDone;
    const l = listen("erin-laptop");
    await until(() => l.lines().includes("history: done 1/1 messages"), "the import").catch((e) => {
      throw new Error(`${e}: ${l.lines()}`);
    });
    expect(await l.stop()).toBe(0);
    expect((await cli("erin-laptop", ["history", acct("bob")])).stdout).toMatch(/me: written before the laptop/);
  }, 120_000);
});

describe("a running listen and other commands share the store", () => {
  it("send and read run inside the listener; it keeps receiving, nothing is lost", async () => {
    const l = listen("bob");
    await l.ready();
    const sent = await cli("bob", ["send", acct("alice"), "from bob while listening"]);
    ok(sent);
    ok(await cli("bob", ["read", acct("alice")]));
    const second = await cli("bob", ["listen"]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/already in use/);
    ok(await cli("alice", ["send", acct("bob"), "after bob's own commands"]));
    await until(() => l.lines().includes("after bob's own commands"), "the listener still receiving");
    expect(l.lines()).not.toMatch(/replaced/);
    expect(await l.stop()).toBe(0);
    expect(existsSync(join(home, "bob", "control.sock"))).toBe(false);
    expect((await cli("bob", ["history", acct("alice")])).stdout).toMatch(/me: from bob while listening \((sent|delivered|read)\)/);
  }, 120_000);
});

describe("damaged store files are named", () => {
  beforeAll(async () => {
    // dave: a session with alice, and a receive state (he received something).
    ok(await cli("dave", ["init", acct("dave")]));
    ok(await cli("dave", ["send", acct("alice"), "hi alice"]));
    ok(await cli("alice", ["send", acct("dave"), "hi dave"]));
    const first = listen("dave");
    await until(() => first.lines().includes("hi dave"), "dave's first message");
    expect(await first.stop()).toBe(0);
  }, 120_000);

  /** Truncates a store file of dave's for the test, and puts it back after. */
  const damaged = async (path: string, length: number, test: () => Promise<void>) => {
    const saved = readFileSync(path);
    truncateSync(path, length);
    try {
      await test();
    } finally {
      writeFileSync(path, saved);
    }
  };

  it("a truncated session fails the send, naming the file", async () => {
    const session = join(home, "dave", "protocol", "sessions", `${acct("alice")}.1.json`);
    await damaged(session, 20, async () => {
      const send = await cli("dave", ["--timeout", "10", "send", acct("alice"), "broken"]);
      expect(send.code).toBe(1);
      expect(send.stderr).toContain(`store file ${session} is damaged`);
    });
  }, 60_000);

  it("a truncated receive state stops listen with exit code 1, naming the file", async () => {
    const state = join(home, "dave", "conversations", "receive", "state.json");
    await damaged(state, 5, async () => {
      const l = listen("dave");
      await until(() => l.lines().includes("stopped:"), "listen to stop", 20_000).catch((e) => {
        throw new Error(`${e}: ${l.lines()}`);
      });
      expect(await l.exited).toBe(1);
      expect(l.lines()).toContain(`store file ${state} is damaged`);
    });
  }, 60_000);

  it("a truncated identity is named once", async () => {
    const identity = join(home, "dave", "protocol", "identity", "local.json");
    await damaged(identity, 7, async () => {
      const h = await cli("dave", ["history", acct("alice")]);
      expect(h.code).toBe(1);
      expect(h.stderr.match(/is damaged/g)).toHaveLength(1);
      expect(h.stderr).toContain(identity);
    });
  }, 60_000);
});

describe("sealpost audit", () => {
  it("checks the whole log without an account, against a device's pinned key with one, and fails on a wrong key", async () => {
    const bare = await cli("nobody-here", ["audit"]);
    ok(bare);
    expect(bare.stdout).toMatch(/^log key [0-9a-f]{64} \(as the server names it; compare it out of band\)$/m);
    expect(bare.stdout).toMatch(/^\d+ leaves, \d+ accounts; root [0-9a-f]{64} signed at /m);
    expect(bare.stdout).toMatch(/^ok: /m);
    const key = /^log key ([0-9a-f]{64})/m.exec(bare.stdout)![1];

    // Once alice's device has verified a list, it has pinned the key.
    ok(await cli("alice", ["devices", acct("bob")]));
    const status = await cli("alice", ["status"]);
    ok(status);
    expect(status.stdout).toMatch(new RegExp(`^key transparency: log key ${key.slice(0, 16)}\\.\\.\\., head of \\d+ leaves verified \\(signed `, "m"));
    const mine = await cli("alice", ["audit"]);
    ok(mine);
    expect(mine.stdout).toContain(`log key ${key} (the one this device pinned)`);

    ok(await cli("nobody-here", ["audit", "--log-key", key]));
    const wrong = await cli("nobody-here", ["audit", "--log-key", "ab".repeat(32)]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/problem: the server names log key [0-9a-f]{64}, not the expected (ab){32}/);
    expect(wrong.stderr).toMatch(/the log failed the audit/);
    const bad = await cli("nobody-here", ["audit", "--log-key", "xyz"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--log-key takes 32 bytes in hex (64 characters), not "xyz"');
    const down = await cli("nobody-here", ["audit"], { server: "http://127.0.0.1:1" });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/could not read the log from http:\/\/127\.0\.0\.1:1/);
  }, 120_000);
});

describe("the small things", () => {
  it("a file is downloadable by its id prefix, with its caption shown, and never overwrites", async () => {
    writeFileSync(join(home, "notes.txt"), "the file's content");
    ok(await cli("alice", ["send-file", acct("carol"), join(home, "notes.txt"), "--caption", "read this", "--type", "text/plain"]));
    const l = listen("carol");
    await until(() => l.lines().includes("read this"), "the file with its caption").catch((e) => {
      throw new Error(`${e}: ${l.lines()}`);
    });
    expect(await l.stop()).toBe(0);
    const id = /\[file notes\.txt, text\/plain, 18 bytes; `sealpost download` ([0-9a-f]{8})\] read this/.exec(l.lines())![1];
    const out = join(home, "saved-notes.txt");
    ok(await cli("carol", ["download", acct("alice"), id, "--out", out]));
    expect(readFileSync(out, "utf8")).toBe("the file's content");
    const twice = await cli("carol", ["download", acct("alice"), id, "--out", out]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/exists/);
  }, 120_000);

  it("group messages are labelled with their group", async () => {
    const created = await cli("alice", ["group", "create", "club", acct("carol")]);
    ok(created);
    const gid = /^([0-9a-f]+) /m.exec(created.stdout)![1];
    const l = listen("carol");
    ok(await cli("alice", ["group", "send", gid.slice(0, 8), "hello club"]));
    await until(() => l.lines().includes("hello club"), "the group message");
    expect(l.lines()).toMatch(new RegExp(`\\[group ${gid.slice(0, 8)}\\] .*: hello club`));
    expect(await l.stop()).toBe(0);
  }, 120_000);

  it("150 KB of text from stdin is sent, and a history printed into a pipe arrives whole", async () => {
    const long = Array.from({ length: 75 }, (_, i) => `line ${i} ${"y".repeat(2000)}`).join("\n");
    ok(await cli("alice", ["send", acct("carol"), "--stdin"], { stdin: long }));
    const h = await cli("alice", ["history", acct("carol")]);
    ok(h);
    expect(h.stdout.length).toBeGreaterThan(150_000);
    expect(h.stdout.trimEnd().split("\n").at(-1)).toMatch(/^line 74 y{2000} \((sent|delivered|read)\)$/);
  }, 120_000);
});
