// ustar headers and PAX extended records, encoded exactly as apk-tools reads them.
// Only what APK v2 needs: regular files, hard and symbolic links, directories,
// device nodes and fifos, with PAX `path`, `linkpath`, checksums and xattrs.

import { isUtf8 } from "node:buffer";
import { ApkError } from "./errors.js";
import { decodeUtf8 } from "./utf8.js";

export const BLOCK = 512;
export const ZERO_BLOCK = new Uint8Array(BLOCK);

export type EntryType = "file" | "hardlink" | "symlink" | "char" | "block" | "dir" | "fifo";

const TYPEFLAG: Record<EntryType, string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};
const FROM_TYPEFLAG: Record<string, EntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
};

export interface TarHeader {
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkTarget?: string;
  uname?: string;
  gname?: string;
  devMajor?: number;
  devMinor?: number;
  /** PAX records other than path/linkpath/size, e.g. APK-TOOLS.checksum.SHA1, SCHILY.xattr.*. */
  pax?: Record<string, string | Uint8Array>;
}

// Largest value a 12-byte octal field can hold with its terminator (8 GiB - 1).
const MAX_OCTAL_11 = 0o77777777777;

function writeString(buf: Uint8Array, off: number, len: number, s: string) {
  const b = Buffer.from(s, "utf8");
  if (b.length > len) throw new ApkError("INVALID_FIELD", `tar field too long: ${JSON.stringify(s)}`);
  buf.set(b, off);
}

function writeOctal(buf: Uint8Array, off: number, len: number, n: number) {
  if (!Number.isInteger(n) || n < 0)
    throw new ApkError("INVALID_FIELD", `tar number must be a non-negative integer, got ${n}`);
  const s = n.toString(8).padStart(len - 1, "0");
  if (s.length > len - 1) throw new ApkError("LIMIT", `tar number ${n} does not fit in ${len - 1} octal digits`);
  writeString(buf, off, len, s + "\0");
}

/** One PAX record: "<len> <key>=<value>\n", where len counts the whole record including its own digits. */
export function paxRecord(key: string, value: string | Uint8Array): Buffer {
  const v = typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value);
  const body = Buffer.concat([Buffer.from(` ${key}=`, "utf8"), v, Buffer.from("\n")]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), "ascii"), body]);
}

function rawHeader(h: Omit<RawHeader, "prefix">): Uint8Array {
  const buf = new Uint8Array(BLOCK);
  writeString(buf, 0, 100, h.name);
  writeOctal(buf, 100, 8, h.mode & 0o7777);
  writeOctal(buf, 108, 8, h.uid);
  writeOctal(buf, 116, 8, h.gid);
  writeOctal(buf, 124, 12, h.size);
  writeOctal(buf, 136, 12, h.mtime);
  buf.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  writeString(buf, 156, 1, h.typeflag);
  writeString(buf, 157, 100, h.linkname);
  writeString(buf, 257, 6, "ustar\0");
  writeString(buf, 263, 2, "00");
  writeString(buf, 265, 32, h.uname);
  writeString(buf, 297, 32, h.gname);
  writeOctal(buf, 329, 8, h.devMajor);
  writeOctal(buf, 337, 8, h.devMinor);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += buf[i]!;
  writeString(buf, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return buf;
}

function fitsUstar(s: string): boolean {
  return Buffer.byteLength(s, "utf8") <= 100;
}

/**
 * Encode the header blocks of one entry: an optional PAX `x` header with its
 * records, then the ustar header. Content and padding are the caller's.
 */
export function encodeHeader(h: TarHeader): Buffer {
  const records: Buffer[] = [];
  let name = h.path;
  let linkname = h.linkTarget ?? "";
  if (!fitsUstar(name)) {
    records.push(paxRecord("path", name));
    name = truncateUtf8(name, 100);
  }
  if (!fitsUstar(linkname)) {
    records.push(paxRecord("linkpath", linkname));
    linkname = truncateUtf8(linkname, 100);
  }
  if (h.size > MAX_OCTAL_11)
    throw new ApkError("LIMIT", `${h.path}: ${h.size} bytes exceeds the ustar limit of 8 GiB`, { subject: h.path });
  // PAX records sorted by key so output does not depend on insertion order.
  for (const key of Object.keys(h.pax ?? {}).sort()) records.push(paxRecord(key, h.pax![key]!));
  const parts: Uint8Array[] = [];
  if (records.length) {
    const body = Buffer.concat(records);
    parts.push(
      rawHeader({
        name: "././@PaxHeader",
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: body.length,
        mtime: h.mtime,
        typeflag: "x",
        linkname: "",
        uname: "",
        gname: "",
        devMajor: 0,
        devMinor: 0,
      }),
      body,
      new Uint8Array(padding(body.length)),
    );
  }
  parts.push(
    rawHeader({
      name,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      size: h.type === "file" ? h.size : 0,
      mtime: h.mtime,
      typeflag: TYPEFLAG[h.type],
      linkname,
      uname: h.uname ?? (h.uid === 0 ? "root" : ""),
      gname: h.gname ?? (h.gid === 0 ? "root" : ""),
      devMajor: h.devMajor ?? 0,
      devMinor: h.devMinor ?? 0,
    }),
  );
  return Buffer.concat(parts);
}

function truncateUtf8(s: string, max: number): string {
  const b = Buffer.from(s, "utf8");
  return b
    .subarray(0, max)
    .toString("utf8")
    .replace(/\uFFFD+$/, "");
}

export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** A raw parsed ustar header block, before PAX records are applied. */
export interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devMajor: number;
  devMinor: number;
  prefix: string;
}

export function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Bytes `off..off+len` up to the first NUL as text: ASCII taken as it is, anything else only as valid UTF-8. */
function readString(b: Uint8Array, off: number, len: number, field: string): string {
  let end = off;
  let high = 0;
  const stop = off + len;
  while (end < stop) {
    const c = b[end]!;
    if (c === 0) break;
    high |= c;
    end++;
  }
  if (end === off) return "";
  // Most names are ASCII: decoded without the UTF-8 check and without a Buffer view.
  if (high < 0x80) return latin1(b, off, end);
  const raw = Buffer.from(b.buffer, b.byteOffset + off, end - off);
  // Never decode with replacement: distinct invalid names would become one.
  if (!isUtf8(raw))
    throw new ApkError(
      "BAD_ARCHIVE",
      `tar header ${field} ${JSON.stringify(raw.toString("latin1"))} is not valid UTF-8`,
    );
  return raw.toString("utf8");
}

function latin1(b: Uint8Array, off: number, end: number): string {
  return Buffer.from(b.buffer, b.byteOffset + off, end - off).toString("latin1");
}

/**
 * A numeric field: octal digits, optionally led by spaces and ended by NUL
 * or spaces (what tar writers emit), or GNU base-256 (high bit set).
 */
function readOctal(b: Uint8Array, off: number, len: number, field: string): number {
  if (b[off]! & 0x80) {
    let n = 0;
    for (let i = off + 1; i < off + len; i++) n = n * 256 + b[i]!;
    n += (b[off]! & 0x7f) * 256 ** (len - 1);
    return n;
  }
  const stop = off + len;
  let i = off;
  while (i < stop && b[i] === 0x20) i++;
  let n = 0;
  let digits = 0;
  for (; i < stop; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) break;
    n = n * 8 + (c - 0x30);
    digits++;
  }
  // What may follow the digits: NUL or spaces, then anything after a NUL is ignored.
  for (; i < stop; i++) {
    const c = b[i]!;
    if (c === 0) break;
    if (c !== 0x20) {
      const s = readString(b, off, len, field).trim();
      throw new ApkError("BAD_ARCHIVE", `tar header field ${field} is not octal: ${JSON.stringify(s)}`);
    }
  }
  return digits ? n : 0;
}

export function decodeHeader(b: Uint8Array): RawHeader {
  let sum = 0;
  for (let i = 0; i < 148; i++) sum += b[i]!;
  for (let i = 156; i < BLOCK; i++) sum += b[i]!;
  sum += 8 * 0x20;
  const stored = readOctal(b, 148, 8, "chksum");
  if (stored !== sum)
    throw new ApkError("BAD_ARCHIVE", `tar header checksum mismatch (stored ${stored}, computed ${sum})`);
  const magic = readString(b, 257, 6, "magic");
  return {
    name: readString(b, 0, 100, "name"),
    mode: readOctal(b, 100, 8, "mode"),
    uid: readOctal(b, 108, 8, "uid"),
    gid: readOctal(b, 116, 8, "gid"),
    size: readOctal(b, 124, 12, "size"),
    mtime: readOctal(b, 136, 12, "mtime"),
    typeflag: String.fromCharCode(b[156]!),
    linkname: readString(b, 157, 100, "linkname"),
    uname: readString(b, 265, 32, "uname"),
    gname: readString(b, 297, 32, "gname"),
    devMajor: readOctal(b, 329, 8, "devmajor"),
    devMinor: readOctal(b, 337, 8, "devminor"),
    prefix: magic.startsWith("ustar") && magic !== "ustar " ? readString(b, 345, 155, "prefix") : "",
  };
}

export function entryTypeOf(typeflag: string): EntryType | undefined {
  return FROM_TYPEFLAG[typeflag];
}

/** Parse a PAX extended header body into records; values stay raw bytes (xattrs are binary). */
export function parsePax(body: Uint8Array, subject: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // trailing NUL padding
    const sp = buf.indexOf(0x20, pos);
    if (sp < 0 || sp - pos > 20)
      throw new ApkError("BAD_ARCHIVE", `${subject}: malformed PAX record length`, { subject });
    const lenStr = buf.subarray(pos, sp).toString("ascii");
    if (!/^\d+$/.test(lenStr))
      throw new ApkError("BAD_ARCHIVE", `${subject}: malformed PAX record length ${JSON.stringify(lenStr)}`, {
        subject,
      });
    const len = Number(lenStr);
    if (len <= sp - pos + 1 || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) {
      throw new ApkError("BAD_ARCHIVE", `${subject}: PAX record length ${len} does not match its content`, { subject });
    }
    const rec = buf.subarray(sp + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new ApkError("BAD_ARCHIVE", `${subject}: PAX record without "="`, { subject });
    out.set(decodeUtf8(rec.subarray(0, eq), "PAX record key", subject), Buffer.from(rec.subarray(eq + 1)));
    pos += len;
  }
  return out;
}
