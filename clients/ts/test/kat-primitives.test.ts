/**
 * Known-answer tests from the primitives' specifications, against both providers.
 * Sources: RFC 7748 sections 5.2 and 6.1 (X25519), RFC 8032 section 7.1 TEST 1-3 (Ed25519),
 * RFC 5869 appendix A.1 and A.3 (HKDF-SHA256), McGrew & Viega, "The Galois/Counter Mode of
 * Operation (GCM)" (2005) test cases 13-16 (AES-256-GCM), RFC 4231 test case 2 (HMAC-SHA256)
 * and, for ML-KEM-768, the C2SP/CCTV "accumulated" vector also used by Go's crypto/mlkem
 * TestAccumulated (100 iterations: 1114b1b6...): @noble/post-quantum 0.7.1 ships no KAT
 * files in node_modules.
 */
import { describe, expect, it } from "vitest";
import { shake128 } from "@noble/hashes/sha3.js";
import { fromHex, toHex, utf8 } from "../src/crypto/bytes.js";
import { PROVIDERS } from "./helpers.js";

describe.each(PROVIDERS)("known answers (%s)", (_name, makeProvider) => {
  const p = makeProvider();

  it("X25519, RFC 7748 section 5.2", async () => {
    expect(
      toHex(
        await p.x25519(
          fromHex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
          fromHex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),
        ),
      ),
    ).toBe("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
    expect(
      toHex(
        await p.x25519(
          fromHex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
          fromHex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"),
        ),
      ),
    ).toBe("95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
  });

  it("X25519, RFC 7748 section 6.1 (Diffie-Hellman)", async () => {
    const a = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const b = fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    expect(toHex(await p.x25519PublicKey(a))).toBe("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    expect(toHex(await p.x25519PublicKey(b))).toBe("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    expect(toHex(await p.x25519(a, await p.x25519PublicKey(b)))).toBe(shared);
    expect(toHex(await p.x25519(b, await p.x25519PublicKey(a)))).toBe(shared);
  });

  it("X25519 rejects low-order points (RFC 7748 section 6.1 all-zero check)", async () => {
    const a = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    await expect(p.x25519(a, new Uint8Array(32))).rejects.toThrow(/low order/);
    await expect(p.x25519(a, fromHex("0100000000000000000000000000000000000000000000000000000000000000"))).rejects.toThrow(/low order/);
  });

  const ed = [
    [
      "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
      "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
      "",
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ],
    [
      "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
      "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
      "72",
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ],
    [
      "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
      "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
      "af82",
      "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ],
  ];
  it.each(ed)("Ed25519, RFC 8032 section 7.1 (secret %s)", async (secret, pub, msg, sig) => {
    expect(toHex(await p.ed25519PublicKey(fromHex(secret)))).toBe(pub);
    expect(toHex(await p.ed25519Sign(fromHex(secret), fromHex(msg)))).toBe(sig);
    expect(await p.ed25519Verify(fromHex(pub), fromHex(msg), fromHex(sig))).toBe(true);
    const bad = fromHex(sig);
    bad[10] ^= 1;
    expect(await p.ed25519Verify(fromHex(pub), fromHex(msg), bad)).toBe(false);
    expect(await p.ed25519Verify(fromHex(pub), utf8("other"), fromHex(sig))).toBe(false);
  });

  it("HKDF-SHA256, RFC 5869 A.1 and A.3", async () => {
    const ikm = new Uint8Array(22).fill(0x0b);
    expect(toHex(await p.hkdf(ikm, fromHex("000102030405060708090a0b0c"), fromHex("f0f1f2f3f4f5f6f7f8f9"), 42))).toBe(
      "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    );
    expect(toHex(await p.hkdf(ikm, new Uint8Array(0), new Uint8Array(0), 42))).toBe(
      "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    );
  });

  it("HMAC-SHA256, RFC 4231 test case 2; SHA-256/512 of 'abc' (FIPS 180-4 examples)", async () => {
    expect(toHex(await p.hmacSha256(utf8("Jefe"), utf8("what do ya want for nothing?")))).toBe(
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    );
    expect(toHex(p.sha256(utf8("abc")))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(toHex(p.sha512(utf8("abc")))).toBe(
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    );
  });

  it("HMAC-SHA256, RFC 4231 test cases 1, 3, 4, 6 and 7 (keys shorter and longer than a block, data longer than a block), in any order", async () => {
    const cases: [Uint8Array, Uint8Array, string][] = [
      [fromHex("0b".repeat(20)), utf8("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"],
      [fromHex("aa".repeat(20)), fromHex("dd".repeat(50)), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"],
      [
        fromHex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
        fromHex("cd".repeat(50)),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
      ],
      [
        fromHex("aa".repeat(131)),
        utf8("Test Using Larger Than Block-Size Key - Hash Key First"),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
      ],
      [
        fromHex("aa".repeat(131)),
        utf8(
          "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
        ),
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
      ],
    ];
    // Forwards, backwards and concurrently: an implementation that reuses buffers between
    // calls must not carry one call's key or output into the next.
    for (const order of [cases, [...cases].reverse()]) {
      for (const [key, data, mac] of order) expect(toHex(await p.hmacSha256(key, data))).toBe(mac);
    }
    const macs = await Promise.all(cases.map(([key, data]) => p.hmacSha256(key, data)));
    expect(macs.map(toHex)).toEqual(cases.map(([, , mac]) => mac));
  });

  const key15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
  const p15 = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
  const c15 = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
  const gcm = [
    ["13", "00".repeat(32), "00".repeat(12), "", "", "530f8afbc74536b9a963b4f1c4cb738b"],
    ["14", "00".repeat(32), "00".repeat(12), "00".repeat(16), "", "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919"],
    ["15", key15, "cafebabefacedbaddecaf888", p15, "", c15 + "b094dac5d93471bdec1a502270e3cc6c"],
    [
      "16",
      key15,
      "cafebabefacedbaddecaf888",
      p15.slice(0, 120),
      "feedfacedeadbeeffeedfacedeadbeefabaddad2",
      c15.slice(0, 120) + "76fc6ece0f4e1768cddf8853bb2d551b",
    ],
  ];
  it.each(gcm)("AES-256-GCM, McGrew-Viega test case %s", async (_n, key, iv, pt, aad, expected) => {
    const sealed = await p.aesGcmSeal(fromHex(key), fromHex(iv), fromHex(pt), fromHex(aad));
    expect(toHex(sealed)).toBe(expected);
    expect(toHex((await p.aesGcmOpen(fromHex(key), fromHex(iv), sealed, fromHex(aad)))!)).toBe(pt);
    const tampered = sealed.slice();
    tampered[tampered.length - 1] ^= 0x80;
    expect(await p.aesGcmOpen(fromHex(key), fromHex(iv), tampered, fromHex(aad))).toBeUndefined();
  });

  it("ML-KEM-768, C2SP/CCTV accumulated vector (100 iterations, as Go crypto/mlkem TestAccumulated -short)", () => {
    // seed, m and a random ciphertext are read from SHAKE-128(""); ek, ct, K and the
    // implicit-rejection K of the random ciphertext are absorbed into a second SHAKE-128.
    const s = shake128.create({});
    const o = shake128.create({ dkLen: 32 });
    for (let i = 0; i < 100; i++) {
      const { publicKey, secretKey } = p.mlKemKeygen(s.xof(64));
      o.update(publicKey);
      const { ciphertext, sharedSecret } = p.mlKemEncapsulate(publicKey, s.xof(32));
      o.update(ciphertext);
      o.update(sharedSecret);
      expect(toHex(p.mlKemDecapsulate(ciphertext, secretKey))).toBe(toHex(sharedSecret));
      o.update(p.mlKemDecapsulate(s.xof(1088), secretKey));
    }
    expect(toHex(o.digest())).toBe("1114b1b6699ed191734fa339376afa7e285c9e6acf6ff0177d346696ce564415");
  });
});
