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

/**
 * Write `s` as UTF-8 at `off` (the field is zero already); ASCII goes byte by
 * byte, without a Buffer, since nearly every tar field is ASCII.
 */
function writeString(buf: Uint8Array, off: number, len: number, s: string) {
  const n = s.length;
  if (n <= len) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[off + i] = c;
    }
    if (i === n) return;
  }
  const b = Buffer.from(s, "utf8");
  if (b.length > len) throw new ApkError("INVALID_FIELD", `tar field too long: ${JSON.stringify(s)}`);
  buf.set(b, off);
}

/** `n` in octal, zero-padded to len-1 digits and NUL-terminated. */
function writeOctal(buf: Uint8Array, off: number, len: number, n: number) {
  if (!Number.isInteger(n) || n < 0)
    throw new ApkError("INVALID_FIELD", `tar number must be a non-negative integer, got ${n}`);
  if (n >= 8 ** (len - 1)) throw new ApkError("LIMIT", `tar number ${n} does not fit in ${len - 1} octal digits`);
  let i = off + len - 2;
  if (n < 0x80000000) {
    // Small numbers (nearly all): integer arithmetic.
    for (let v = n | 0; i >= off; i--, v >>>= 3) buf[i] = 0x30 | (v & 7);
  } else {
    for (let v = n; i >= off; i--, v = Math.floor(v / 8)) buf[i] = 0x30 + (v % 8);
  }
  buf[off + len - 1] = 0;
}

/** One PAX record: "<len> <key>=<value>\n", where len counts the whole record including its own digits. */
export function paxRecord(key: string, value: string | Uint8Array): Buffer {
  const v = typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value);
  const body = Buffer.concat([Buffer.from(` ${key}=`, "utf8"), v, Buffer.from("\n")]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), "ascii"), body]);
}

/** Write one ustar header block at `off` of `buf`, whose 512 bytes there must be zero. */
function rawHeaderAt(h: Omit<RawHeader, "prefix">, buf: Uint8Array, off: number): void {
  writeString(buf, off, 100, h.name);
  writeOctal(buf, off + 100, 8, h.mode & 0o7777);
  writeOctal(buf, off + 108, 8, h.uid);
  writeOctal(buf, off + 116, 8, h.gid);
  writeOctal(buf, off + 124, 12, h.size);
  writeOctal(buf, off + 136, 12, h.mtime);
  buf.fill(0x20, off + 148, off + 156); // checksum is computed with its own field as spaces
  writeString(buf, off + 156, 1, h.typeflag);
  writeString(buf, off + 157, 100, h.linkname);
  writeString(buf, off + 257, 6, "ustar\0");
  writeString(buf, off + 263, 2, "00");
  writeString(buf, off + 265, 32, h.uname);
  writeString(buf, off + 297, 32, h.gname);
  writeOctal(buf, off + 329, 8, h.devMajor);
  writeOctal(buf, off + 337, 8, h.devMinor);
  // The prefix field (345..500) and the rest are never written: zero.
  let sum = 0;
  for (let i = off; i < off + 345; i++) sum += buf[i]!;
  writeOctal(buf, off + 148, 7, sum);
  buf[off + 155] = 0x20;
}

function rawHeader(h: Omit<RawHeader, "prefix">): Uint8Array {
  const buf = new Uint8Array(BLOCK);
  rawHeaderAt(h, buf, 0);
  return buf;
}

/** Whether `s` takes at most 100 bytes as UTF-8. */
function fitsUstar(s: string): boolean {
  // A UTF-16 code unit is at most 3 bytes of UTF-8.
  return s.length <= 33 || Buffer.byteLength(s, "utf8") <= 100;
}

/** The ustar fields of an entry that needs no PAX records. */
function ustarFields(h: TarHeader, name: string, linkname: string): Omit<RawHeader, "prefix"> {
  return {
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
  };
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
  parts.push(rawHeader(ustarFields(h, name, linkname)));
  return Buffer.concat(parts);
}

/**
 * encodeHeader(h) written at `off` of `buf`: the number of bytes written, or
 * -1 (nothing written) when they would not fit before `buf`'s end. The common
 * entry (short names, no PAX records) is encoded in place, without a buffer of
 * its own, which is what makes a layer of 100,000 small files cheap.
 */
export function encodeHeaderInto(h: TarHeader, buf: Uint8Array, off: number): number {
  const linkname = h.linkTarget ?? "";
  const simple =
    (h.pax === undefined || Object.keys(h.pax).length === 0) &&
    fitsUstar(h.path) &&
    fitsUstar(linkname) &&
    h.size <= MAX_OCTAL_11;
  if (!simple) {
    const b = encodeHeader(h);
    if (b.length > buf.length - off) return -1;
    buf.set(b, off);
    return b.length;
  }
  if (BLOCK > buf.length - off) return -1;
  buf.fill(0, off, off + BLOCK);
  rawHeaderAt(ustarFields(h, h.path, linkname), buf, off);
  return BLOCK;
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
  // The owner names of nearly every entry.
  if (end - off === 4 && b[off] === 0x72 && b[off + 1] === 0x6f && b[off + 2] === 0x6f && b[off + 3] === 0x74)
    return "root";
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
  // Buffer's ranged toString makes no view object: half the cost, per header field.
  if (Buffer.isBuffer(b)) return b.toString("latin1", off, end);
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

/** Sum of the bytes of a header block, its checksum field counted as spaces. */
function headerSum(b: Uint8Array, o: number): number {
  let sum = 0;
  if (((b.byteOffset + o) & 3) === 0 && b.length - o >= BLOCK) {
    // Four bytes at a time, two 16-bit lanes per accumulator (128 words of at most 255 per lane cannot carry).
    const w = new Uint32Array(b.buffer, b.byteOffset + o, BLOCK / 4);
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < BLOCK / 4; i++) {
      const x = w[i]!;
      lo += x & 0x00ff00ff;
      hi += (x >>> 8) & 0x00ff00ff;
    }
    sum = (lo & 0xffff) + (lo >>> 16) + (hi & 0xffff) + (hi >>> 16);
    for (let i = o + 148; i < o + 156; i++) sum -= b[i]!;
  } else {
    for (let i = o; i < o + 148; i++) sum += b[i]!;
    for (let i = o + 156; i < o + BLOCK; i++) sum += b[i]!;
  }
  return sum + 8 * 0x20;
}

/** The header block at offset `o` of `b` (default 0: `b` is the block). */
export function decodeHeader(b: Uint8Array, o = 0): RawHeader {
  const sum = headerSum(b, o);
  const stored = readOctal(b, o + 148, 8, "chksum");
  if (stored !== sum)
    throw new ApkError("BAD_ARCHIVE", `tar header checksum mismatch (stored ${stored}, computed ${sum})`);
  const typeflag = String.fromCharCode(b[o + 156]!);
  const numbers = {
    mode: readOctal(b, o + 100, 8, "mode"),
    uid: readOctal(b, o + 108, 8, "uid"),
    gid: readOctal(b, o + 116, 8, "gid"),
    size: readOctal(b, o + 124, 12, "size"),
    mtime: readOctal(b, o + 136, 12, "mtime"),
  };
  if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
    // An extended header's own names mean nothing (apk reads only its size and body): not decoded.
    return { name: "", ...numbers, typeflag, linkname: "", uname: "", gname: "", devMajor: 0, devMinor: 0, prefix: "" };
  }
  // POSIX "ustar\0" (and anything else starting "ustar" but GNU's "ustar ") has a prefix field.
  const posix =
    b[o + 257] === 0x75 &&
    b[o + 258] === 0x73 &&
    b[o + 259] === 0x74 &&
    b[o + 260] === 0x61 &&
    b[o + 261] === 0x72 &&
    b[o + 262] !== 0x20;
  return {
    name: readString(b, o, 100, "name"),
    ...numbers,
    typeflag,
    linkname: readString(b, o + 157, 100, "linkname"),
    uname: readString(b, o + 265, 32, "uname"),
    gname: readString(b, o + 297, 32, "gname"),
    devMajor: readOctal(b, o + 329, 8, "devmajor"),
    devMinor: readOctal(b, o + 337, 8, "devminor"),
    prefix: posix ? readString(b, o + 345, 155, "prefix") : "",
  };
}

export function entryTypeOf(typeflag: string): EntryType | undefined {
  return FROM_TYPEFLAG[typeflag];
}

/** A PAX record's key, bytes `start..end` of `buf`: ASCII read as it is, anything else only as valid UTF-8. */
function paxKey(buf: Buffer, start: number, end: number, subject: string): string {
  for (let i = start; i < end; i++)
    if (buf[i]! >= 0x80) return decodeUtf8(buf.subarray(start, end), "PAX record key", subject);
  return buf.toString("latin1", start, end);
}

/**
 * Parse a PAX extended header body (bytes `start..end` of `body`, all of it
 * by default) into records; values stay raw bytes (xattrs are binary), copied.
 */
export function parsePax(body: Uint8Array, subject: string, start = 0, end = body.length): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  let pos = start;
  while (pos < end) {
    if (buf[pos] === 0) break; // trailing NUL padding
    const sp = buf.indexOf(0x20, pos);
    if (sp < 0 || sp >= end || sp - pos > 20)
      throw new ApkError("BAD_ARCHIVE", `${subject}: malformed PAX record length`, { subject });
    // Digits only, read in place (a string per record costs more than the rest of the parse).
    let len = 0;
    let i = pos;
    for (; i < sp; i++) {
      const c = buf[i]!;
      if (c < 0x30 || c > 0x39) break;
      len = len * 10 + (c - 0x30);
    }
    if (i !== sp || sp === pos) {
      const lenStr = buf.subarray(pos, sp).toString("ascii");
      throw new ApkError("BAD_ARCHIVE", `${subject}: malformed PAX record length ${JSON.stringify(lenStr)}`, {
        subject,
      });
    }
    if (len <= sp - pos + 1 || pos + len > end || buf[pos + len - 1] !== 0x0a) {
      throw new ApkError("BAD_ARCHIVE", `${subject}: PAX record length ${len} does not match its content`, { subject });
    }
    const recEnd = pos + len - 1;
    const eq = buf.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= recEnd) throw new ApkError("BAD_ARCHIVE", `${subject}: PAX record without "="`, { subject });
    const value = Buffer.allocUnsafe(recEnd - eq - 1);
    buf.copy(value, 0, eq + 1, recEnd);
    out.set(paxKey(buf, sp + 1, eq, subject), value);
    pos += len;
  }
  return out;
}
