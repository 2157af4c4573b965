/** Rate-limit keys of caller addresses (GetAuthChallenge is limited per caller, not per target). */
import { describe, expect, it } from "vitest";
import { callerLimitKey } from "../src/caller-address.js";

describe("callerLimitKey", () => {
  it("keeps IPv4 (also IPv4-mapped) and groups IPv6 by /64", () => {
    expect(callerLimitKey("127.0.0.2")).toBe("127.0.0.2");
    expect(callerLimitKey("::ffff:10.1.2.3")).toBe("10.1.2.3");
    expect(callerLimitKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(callerLimitKey("2001:DB8:1:2:bbbb:cccc:dddd:eeee")).toBe("2001:db8:1:2::/64");
    expect(callerLimitKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(callerLimitKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(callerLimitKey("::1")).toBe("0:0:0:0::/64");
    expect(callerLimitKey("unknown")).toBe("unknown");
  });
});
