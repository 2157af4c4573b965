/**
 * The WebCrypto provider's own rules: an engine without X25519 or Ed25519 (NotSupportedError)
 * gets @noble's results for them from then on, other WebCrypto errors are not swallowed, and an
 * empty HMAC key (which WebCrypto refuses) gives RFC 2104's answer. Agreement with the other
 * providers on everything else is in provider-agreement.test.ts and vectors.test.ts.
 */
import { describe, expect, it } from "vitest";
import { toHex } from "../src/crypto/bytes.js";
import { createNobleProvider } from "../src/crypto/noble-provider.js";
import { createWebCryptoProvider } from "../src/crypto/webcrypto-provider.js";
import { defaultProvider } from "../src/platform/web.js";

/** crypto.subtle, except that the named algorithms are unknown to it (as in an older engine). */
function subtleWithout(missing: string[], calls: string[]): SubtleCrypto {
  const real = globalThis.crypto.subtle;
  const name = (alg: unknown) => (typeof alg === "string" ? alg : ((alg as { name?: string })?.name ?? ""));
  const refuse = (alg: unknown) => {
    if (missing.includes(name(alg))) {
      const e = new Error(`${name(alg)} is not supported`);
      e.name = "NotSupportedError";
      throw e;
    }
  };
  return new Proxy(real, {
    get(target, prop: string) {
      const f = Reflect.get(target, prop) as (...args: unknown[]) => Promise<unknown>;
      if (typeof f !== "function") return f;
      return async (...args: unknown[]) => {
        calls.push(prop);
        // importKey(format, data, algorithm, ...), sign/verify/encrypt/deriveBits(algorithm, ...)
        refuse(prop === "importKey" || prop === "generateKey" ? args[prop === "importKey" ? 2 : 0] : args[0]);
        return f.apply(target, args);
      };
    },
  });
}

describe("WebCrypto provider", () => {
  const noble = createNobleProvider();
  const priv = new Uint8Array(32).fill(7);
  const seed = new Uint8Array(32).fill(9);
  const message = new Uint8Array([1, 2, 3]);

  it("falls back to @noble for curves the engine lacks, and keeps WebCrypto for the rest", async () => {
    const calls: string[] = [];
    const p = createWebCryptoProvider({ subtle: subtleWithout(["X25519", "Ed25519"], calls) });
    const peer = await noble.x25519PublicKey(new Uint8Array(32).fill(3));
    expect(toHex(await p.x25519PublicKey(priv))).toBe(toHex(await noble.x25519PublicKey(priv)));
    expect(toHex(await p.x25519(priv, peer))).toBe(toHex(await noble.x25519(priv, peer)));
    expect(toHex(await p.ed25519PublicKey(seed))).toBe(toHex(await noble.ed25519PublicKey(seed)));
    expect(toHex(await p.ed25519Sign(seed, message))).toBe(toHex(await noble.ed25519Sign(seed, message)));
    // Each curve was tried once, then left alone.
    const tried = calls.length;
    await p.x25519(priv, peer);
    await p.ed25519Sign(seed, message);
    expect(calls.length).toBe(tried);
    // A low-order point is still refused the same way.
    await expect(p.x25519(priv, new Uint8Array(32))).rejects.toThrow(/invalid or of low order/);
    // AES-GCM and HMAC still go through WebCrypto.
    await p.aesGcmSeal(new Uint8Array(32), new Uint8Array(12), message, new Uint8Array(0));
    await p.hmacSha256(seed, message);
    expect(calls.slice(tried)).toEqual(expect.arrayContaining(["importKey", "encrypt", "sign"]));
  });

  it("does not hide other WebCrypto failures behind the fallback", async () => {
    const broken = new Proxy(globalThis.crypto.subtle, {
      get(target, prop: string) {
        const f = Reflect.get(target, prop);
        if (prop !== "exportKey") return typeof f === "function" ? f.bind(target) : f;
        return async () => {
          throw new DOMException("export failed", "OperationError");
        };
      },
    });
    const p = createWebCryptoProvider({ subtle: broken });
    await expect(p.ed25519PublicKey(seed)).rejects.toThrow(/export failed/);
  });

  it("answers an empty HMAC key as RFC 2104 does (WebCrypto refuses one)", async () => {
    const p = createWebCryptoProvider();
    expect(toHex(await p.hmacSha256(new Uint8Array(0), message))).toBe(toHex(await noble.hmacSha256(new Uint8Array(0), message)));
  });

  it("the browser platform uses it where crypto.subtle exists, and @noble alone where it does not (plain HTTP)", () => {
    expect(defaultProvider({}, globalThis.crypto.subtle).name).toBe("webcrypto");
    expect(defaultProvider({}, null).name).toBe("noble");
  });
});
