import { describe, expect, it } from "vitest";
import { PROVIDERS, bodyText, introduce, makeDevice, text } from "./helpers.js";

describe.each(PROVIDERS)("SessionCipher (%s)", (_name, makeProvider) => {
  it("sets up a session and exchanges messages both ways", async () => {
    const p = makeProvider();
    const alice = await makeDevice(p, "alice", 1);
    const bob = await makeDevice(p, "bob", 1);
    await introduce(alice, bob);
    const m1 = await alice.cipher.encryptForDevices(text("hello bob"), [{ address: bob.address, bundle: await bob.bundle() }]);
    expect(m1.entries).toHaveLength(1);
    const d1 = await bob.cipher.decrypt(m1.entries[0].entry, m1.sharedBody, alice.address);
    expect(bodyText(d1.content)).toBe("hello bob");
    expect(d1.newSession).toBe(true);
    expect(d1.channel.status).toBe("in_order");
    expect(await bob.stores.oneTimePrekeys.load(1)).toBeUndefined();
    const m2 = await bob.cipher.encryptForDevices(text("hi alice"), [{ address: alice.address }]);
    const d2 = await alice.cipher.decrypt(m2.entries[0].entry, m2.sharedBody, bob.address);
    expect(bodyText(d2.content)).toBe("hi alice");
    const m3 = await alice.cipher.encryptForDevices(text("third"), [{ address: bob.address }]);
    const d3 = await bob.cipher.decrypt(m3.entries[0].entry, m3.sharedBody, alice.address);
    expect(bodyText(d3.content)).toBe("third");
    expect(d3.newSession).toBe(false);
    expect(d3.channel.sequence).toBe(2);
  });
});
