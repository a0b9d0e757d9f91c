// The JKS reader and writer: a truststore written and read back is the same,
// entries sorted and aliases lowercased as Java's JKS does, and every damaged
// or hostile file refused with what is wrong (the digest is checked first).

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { JksError, readKeyStore, setTrustedCertificate, writeKeyStore, type KeyStore } from "./jks.js";

const DER_A = Buffer.from("certificate a");
const DER_B = Buffer.from("certificate b, longer");

function store(): KeyStore {
  const ks: KeyStore = { version: 2, entries: new Map() };
  setTrustedCertificate(ks, "Zeta-CA", DER_A, 1_700_000_000);
  setTrustedCertificate(ks, "alpha", DER_B, 1_700_000_000);
  return ks;
}

/** Java's keyed digest over DATA with the password "changeit", computed here independently. */
function digest(data: Buffer): Buffer {
  const pw = Buffer.from("changeit", "utf16le").swap16();
  return createHash("sha1").update(pw).update("Mighty Aphrodite").update(data).digest();
}

describe("JKS", () => {
  it("writes magic, version, count, entries by alias (lowercased) and the keyed SHA-1 digest", () => {
    const bytes = writeKeyStore(store());
    expect(bytes.readUInt32BE(0)).toBe(0xfeedfeed);
    expect(bytes.readUInt32BE(4)).toBe(2);
    expect(bytes.readUInt32BE(8)).toBe(2);
    expect(bytes.subarray(-20)).toEqual(digest(bytes.subarray(0, -20)));
    const back = readKeyStore(bytes);
    expect([...back.entries.keys()]).toEqual(["alpha", "zeta-ca"]);
    expect(writeKeyStore(back)).toEqual(bytes);
  });

  it("replacing an alias keeps one entry", () => {
    const ks = store();
    setTrustedCertificate(ks, "ALPHA", DER_A, 0);
    expect(ks.entries.size).toBe(2);
  });

  it.each([
    ["a short file", () => Buffer.alloc(10), "not a JKS keystore (too short)"],
    [
      "a changed byte",
      () => {
        const b = writeKeyStore(store());
        b[20] ^= 1;
        return b;
      },
      "the keystore's integrity digest does not match (wrong password, or not a JKS file)",
    ],
    [
      "a wrong magic (digest right)",
      () => {
        const data = writeKeyStore(store()).subarray(0, -20);
        data.writeUInt32BE(0xcafebabe, 0);
        return Buffer.concat([data, digest(data)]);
      },
      "not a JKS keystore (bad magic)",
    ],
    [
      "a count beyond the entries",
      () => {
        const data = writeKeyStore(store()).subarray(0, -20);
        data.writeUInt32BE(1000, 8);
        return Buffer.concat([data, digest(data)]);
      },
      "truncated keystore",
    ],
    [
      "a huge certificate length",
      () => {
        const data = Buffer.from(writeKeyStore(store()).subarray(0, -20));
        // First entry: tag(4) alias(2+5 "alpha") time(8) type(2+5 "X.509") then the length.
        data.writeUInt32BE(0xffffffff, 12 + 4 + 7 + 8 + 7);
        return Buffer.concat([data, digest(data)]);
      },
      "truncated keystore",
    ],
    [
      "an unknown entry tag",
      () => {
        const data = Buffer.from(writeKeyStore(store()).subarray(0, -20));
        data.writeUInt32BE(9, 12);
        return Buffer.concat([data, digest(data)]);
      },
      "unknown JKS entry tag 9",
    ],
    [
      "trailing bytes",
      () => {
        const data = Buffer.concat([writeKeyStore(store()).subarray(0, -20), Buffer.from("extra")]);
        return Buffer.concat([data, digest(data)]);
      },
      "trailing bytes after the keystore's entries",
    ],
  ])("%s is refused", (_what, make, message) => {
    expect(() => readKeyStore(make())).toThrow(new JksError(message));
  });

  it("a different password does not open it", () => {
    expect(() => readKeyStore(writeKeyStore(store()), "secret")).toThrow(/integrity digest does not match/);
  });
});
