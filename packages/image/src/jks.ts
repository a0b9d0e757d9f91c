// Java KeyStore (JKS) files, as far as apko's certificate step needs them:
// read a truststore, add trusted-certificate entries, write it back with the
// entries in alias order and the keyed SHA-1 integrity digest Java checks.
// The file is hostile input: every length is checked against what is left,
// the digest is verified before anything is trusted, and the entry count and
// sizes are bounded by the file itself.

import { createHash } from "node:crypto";

const MAGIC = 0xfeedfeed;
const TAG_PRIVATE_KEY = 1;
const TAG_TRUSTED_CERT = 2;
/** The password Java's cacerts ship with, and apko opens them with. */
export const JAVA_TRUSTSTORE_PASSWORD = "changeit";

export class JksError extends Error {}

/** One entry: its alias and its encoding after the alias (timestamp and body), kept as read. */
interface Entry {
  tag: number;
  alias: string;
  body: Buffer;
}

export interface KeyStore {
  version: number;
  entries: Map<string, Entry>;
}

/** Java's keyed digest: SHA-1 of the password as UTF-16BE, "Mighty Aphrodite", then the data. */
function keyedDigest(password: string, data: Buffer): Buffer {
  const pw = Buffer.alloc(password.length * 2);
  for (let i = 0; i < password.length; i++) pw.writeUInt16BE(password.charCodeAt(i), i * 2);
  return createHash("sha1").update(pw).update("Mighty Aphrodite", "utf8").update(data).digest();
}

class Reader {
  off = 0;
  constructor(private readonly buf: Buffer) {}
  need(n: number): void {
    if (n < 0 || this.off + n > this.buf.length) throw new JksError("truncated keystore");
  }
  u16(): number {
    this.need(2);
    return this.buf.readUInt16BE((this.off += 2) - 2);
  }
  u32(): number {
    this.need(4);
    return this.buf.readUInt32BE((this.off += 4) - 4);
  }
  bytes(n: number): Buffer {
    this.need(n);
    return this.buf.subarray(this.off, (this.off += n));
  }
  /** Java's modified UTF-8 string: u16 length, bytes (read as UTF-8; aliases are ASCII in practice). */
  utf(): string {
    return this.bytes(this.u16()).toString("utf8");
  }
}

/** Skip one certificate (type name in version 2, u32 length, bytes). */
function skipCert(r: Reader, version: number): void {
  if (version === 2) r.utf();
  r.bytes(r.u32());
}

/** Parse a JKS file, verifying its digest with PASSWORD. */
export function readKeyStore(buf: Buffer, password = JAVA_TRUSTSTORE_PASSWORD): KeyStore {
  if (buf.length < 32) throw new JksError("not a JKS keystore (too short)");
  const data = buf.subarray(0, buf.length - 20);
  if (!keyedDigest(password, data).equals(buf.subarray(buf.length - 20)))
    throw new JksError("the keystore's integrity digest does not match (wrong password, or not a JKS file)");
  const r = new Reader(data);
  if (r.u32() !== MAGIC) throw new JksError("not a JKS keystore (bad magic)");
  const version = r.u32();
  if (version !== 1 && version !== 2) throw new JksError(`unsupported JKS version ${version}`);
  const count = r.u32();
  const entries = new Map<string, Entry>();
  for (let i = 0; i < count; i++) {
    const tag = r.u32();
    const alias = r.utf();
    const start = r.off;
    r.bytes(8); // creation time, ms
    if (tag === TAG_TRUSTED_CERT) skipCert(r, version);
    else if (tag === TAG_PRIVATE_KEY) {
      r.bytes(r.u32());
      const chain = r.u32();
      for (let c = 0; c < chain; c++) skipCert(r, version);
    } else throw new JksError(`unknown JKS entry tag ${tag}`);
    entries.set(alias, { tag, alias, body: Buffer.from(data.subarray(start, r.off)) });
  }
  if (r.off !== data.length) throw new JksError("trailing bytes after the keystore's entries");
  return { version, entries };
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function utf(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  if (b.length > 0xffff) throw new JksError("alias too long");
  return Buffer.concat([u16(b.length), b]);
}

/** Add (or replace) a trusted certificate under ALIAS, lowercased as Java's JKS does; created at EPOCH seconds. */
export function setTrustedCertificate(ks: KeyStore, alias: string, der: Buffer, epoch: number): void {
  const name = alias.toLowerCase();
  const time = Buffer.alloc(8);
  time.writeBigUInt64BE(BigInt(epoch) * 1000n);
  const type = ks.version === 2 ? utf("X.509") : Buffer.alloc(0);
  ks.entries.set(name, {
    tag: TAG_TRUSTED_CERT,
    alias: name,
    body: Buffer.concat([time, type, u32(der.length), der]),
  });
}

/** The keystore as JKS bytes: entries sorted by alias, then the keyed digest. */
export function writeKeyStore(ks: KeyStore, password = JAVA_TRUSTSTORE_PASSWORD): Buffer {
  const parts = [u32(MAGIC), u32(ks.version), u32(ks.entries.size)];
  for (const e of [...ks.entries.values()].sort((a, b) => (a.alias < b.alias ? -1 : a.alias > b.alias ? 1 : 0)))
    parts.push(u32(e.tag), utf(e.alias), e.body);
  const data = Buffer.concat(parts);
  return Buffer.concat([data, keyedDigest(password, data)]);
}
