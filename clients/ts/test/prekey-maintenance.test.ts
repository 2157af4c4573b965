/**
 * Prekey upkeep without a server: replaced signed and ML-KEM prekeys are kept for keepOldMs
 * counted from when they were replaced, not from when they were created.
 */
import { describe, expect, it } from "vitest";
import type { ServerApi } from "../src/transport/server-api.js";
import { createNodeProvider } from "../src/crypto/index.js";
import { createMemoryStores } from "../src/store/memory-store.js";
import { createDeviceIdentity } from "../src/protocol/device-keys.js";
import { MemoryConversationStore } from "../src/store/memory-conversation-store.js";
import { PrekeyMaintenance, defaultPrekeyPolicy, initialPrekeys } from "../src/directory/prekey-maintenance.js";

const DAY = 24 * 3600_000;

describe("PrekeyMaintenance", () => {
  it("keeps a replaced signed/KEM prekey for keepOldMs after its replacement, then removes it", async () => {
    const provider = createNodeProvider();
    const protocol = createMemoryStores();
    const store = new MemoryConversationStore();
    let now = 1_700_000_000_000;
    const t0 = now;
    await createDeviceIdentity(provider, protocol, 1, "phone", now);
    const policy = { ...defaultPrekeyPolicy, target: 5, lowWatermark: 1, rotateAfterMs: 7 * DAY, keepOldMs: 30 * DAY };
    await initialPrekeys(provider, protocol, policy, now);
    await store.setAccount({
      accountId: "a",
      deviceId: 1,
      deviceName: "phone",
      serverUrl: "",
      createdAtMs: now,
      nextOneTimePrekeyId: 6,
      signedPrekeyId: 1,
      signedPrekeyCreatedAtMs: now,
      kemPrekeyId: 1,
      kemPrekeyCreatedAtMs: now,
    });
    const server = { signedPrekeyId: 1, kemPrekeyId: 1 };
    const api = {
      directory: {
        getPrekeyCount: async () => ({ oneTimePrekeyCount: 5, ...server }),
        uploadPrekeys: async (req: { signedPrekey?: { keyId: number }; kemPrekey?: { keyId: number } }) => {
          if (req.signedPrekey) server.signedPrekeyId = req.signedPrekey.keyId;
          if (req.kemPrekey) server.kemPrekeyId = req.kemPrekey.keyId;
          return { oneTimePrekeyCount: 5 };
        },
      },
    } as unknown as ServerApi;
    const upkeep = new PrekeyMaintenance({ api, provider, protocol, store, now: () => now, emit: () => {}, policy });

    // Rotations every 7 days: key 1 is replaced at day 7, key 2 at day 14, ...
    for (const day of [7, 14, 21, 28, 35]) {
      now = t0 + day * DAY;
      await upkeep.run();
    }
    // Day 35: key 1 was created 35 days ago but replaced only 28 days ago: still kept.
    expect(await protocol.signedPrekeys.ids()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await protocol.kemPrekeys.ids()).toEqual([1, 2, 3, 4, 5, 6]);
    now = t0 + 42 * DAY;
    await upkeep.run();
    // Day 42: key 1 (replaced day 7) is past 30 days; key 2 (replaced day 14) is not.
    expect(await protocol.signedPrekeys.ids()).toEqual([2, 3, 4, 5, 6, 7]);
    expect(await protocol.kemPrekeys.ids()).toEqual([2, 3, 4, 5, 6, 7]);
    const account = await store.getAccount();
    expect(account?.retiredSignedPrekeys?.map((r) => r.keyId)).toEqual([2, 3, 4, 5, 6]);
  });
});
