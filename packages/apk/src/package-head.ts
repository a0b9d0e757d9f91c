// Index records from package files without reading their data: what an
// APKINDEX says of a package (C:, S: and the .PKGINFO fields) all comes from
// the signature and control members, so, as apk-tools' `apk index` does, the
// data member is neither inflated nor hashed. The file is read with
// synchronous reads in small chunks (it is usually read whole in one: the
// members an index needs are at its start), which avoids a thread-pool round
// trip per chunk; the same structural checks as openPackage apply to the
// members that are read.

import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { crc32, inflateRawSync } from "node:zlib";
import { ApkError } from "./errors.js";
import { headerLength, type GunzipOptions, type GzipEvent } from "./gzip.js";
import type { IndexRecord } from "./index-text.js";
import { openPackage } from "./package-read.js";

/** The head is at most two members (signatures, control), each within the control member's 64 MiB budget. */
const HEAD_MEMBERS = 2;
const HEAD_CAP = 64 * 1024 * 1024;

/** The first read of a package (the head of most packages fits in it); each later read doubles, up to MAX_CHUNK. */
const FIRST_CHUNK = 8 * 1024;
const MAX_CHUNK = 1024 * 1024;

/** Chunks of an open file descriptor, read synchronously. */
async function* fdChunks(fd: number): AsyncGenerator<Uint8Array> {
  for (let size = FIRST_CHUNK; ; size = Math.min(size * 2, MAX_CHUNK)) {
    const b = Buffer.allocUnsafe(size);
    const n = readSync(fd, b, 0, size, null);
    if (n === 0) return;
    yield n === size ? b : b.subarray(0, n);
  }
}

/** Compressed bytes pulled from a source and not yet consumed. */
class Pending {
  bytes: Buffer = Buffer.alloc(0);
  eof = false;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  /** Pull until at least `n` bytes are pending or the source ends. */
  async want(n: number): Promise<void> {
    const parts: Uint8Array[] = [this.bytes];
    let have = this.bytes.length;
    while (have < n && !this.eof) {
      const r = await this.it.next();
      if (r.done) {
        this.eof = true;
      } else {
        parts.push(r.value);
        have += r.value.length;
      }
    }
    if (parts.length > 1) this.bytes = Buffer.concat(parts, have);
  }
}

type Inflated = { data: Buffer; used: number } | "short";

/** Inflate one raw deflate stream at the start of `b`: its output and compressed length, or "short" when `b` ends inside it. */
function inflateOne(b: Buffer, cap: number, member: number, subject: string): Inflated {
  try {
    // With info, node returns the engine too, whose bytesWritten is the compressed input it consumed.
    const r = inflateRawSync(b, { info: true, maxOutputLength: Math.max(cap, 1), chunkSize: 4096 }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    return { data: r.buffer, used: r.engine.bytesWritten };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "Z_BUF_ERROR") return "short";
    if (code === "ERR_BUFFER_TOO_LARGE")
      throw new ApkError("LIMIT", `${subject}: gzip member ${member + 1} inflates beyond the ${cap}-byte limit`, {
        subject,
      });
    throw new ApkError(
      "BAD_ARCHIVE",
      `${subject}: corrupt deflate data in gzip member ${member + 1} (${(e as Error).message})`,
      { subject },
    );
  }
}

/**
 * The signature and control members inflated with node's zlib in one call
 * each, as the same events gunzipMembers gives (and the same checks: header,
 * CRC, size, limits); it serves only the head of a package.
 */
export async function* headMembers(
  source: AsyncIterable<Uint8Array>,
  opts: GunzipOptions & { subject: string },
): AsyncGenerator<GzipEvent> {
  const { subject } = opts;
  const input = new Pending(source[Symbol.asyncIterator]());
  for (let member = 0; ; member++) {
    await input.want(10);
    if (input.bytes.length === 0) {
      if (member === 0) throw new ApkError("TRUNCATED", `${subject}: empty file`, { subject });
      return;
    }
    if (member >= HEAD_MEMBERS) throw new Error(`${subject}: the head reader was asked for the data member`);
    let hl = headerLength(input.bytes, subject);
    while (hl < 0 && !input.eof) {
      await input.want(input.bytes.length * 2);
      hl = headerLength(input.bytes, subject);
    }
    if (hl < 0)
      throw new ApkError("TRUNCATED", `${subject}: truncated in gzip header of member ${member + 1}`, { subject });
    const limit = opts.maxMemberSize?.(member) ?? HEAD_CAP;
    const cap = Math.min(limit, HEAD_CAP);
    let r = inflateOne(input.bytes.subarray(hl), cap, member, subject);
    while (r === "short" && !input.eof) {
      await input.want(input.bytes.length * 2);
      r = inflateOne(input.bytes.subarray(hl), cap, member, subject);
    }
    if (r === "short")
      throw new ApkError("TRUNCATED", `${subject}: truncated inside gzip member ${member + 1}`, { subject });
    if (r.data.length === cap && cap < limit) throw new Error(`${subject}: member ${member + 1} is larger than a head`);
    const end = hl + r.used + 8;
    await input.want(end);
    if (input.bytes.length < end)
      throw new ApkError("TRUNCATED", `${subject}: truncated in gzip trailer of member ${member + 1}`, { subject });
    const trailer = input.bytes.subarray(end - 8, end);
    if (trailer.readUInt32LE(0) !== crc32(r.data) >>> 0)
      throw new ApkError("BAD_ARCHIVE", `${subject}: CRC mismatch in gzip member ${member + 1}`, { subject });
    if (trailer.readUInt32LE(4) !== r.data.length % 2 ** 32)
      throw new ApkError("BAD_ARCHIVE", `${subject}: size mismatch in gzip member ${member + 1}`, { subject });
    opts.onCompressed?.(member, input.bytes.subarray(0, end));
    input.bytes = input.bytes.subarray(end);
    if (r.data.length) yield { type: "data", member, data: r.data };
    yield { type: "end", member, compressedSize: end, size: r.data.length };
  }
}

/**
 * Open a package file for reading: refuses anything but a regular file (a FIFO
 * or device would block or never end), checked on the opened descriptor.
 */
function openRegular(path: string): { fd: number; size: number } {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ApkError("BAD_ARCHIVE", `${path}: not a regular file`, { subject: path });
    return { fd, size: st.size };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * The index record for a package file from its signature and control members
 * only (C: is the SHA-1 of the compressed control member, S: the file size).
 * The data member is not read beyond the chunk holding the control member's end,
 * so its datahash is not checked here: apk checks it on install, and
 * indexRecordForPackage reads the whole package when that is wanted.
 */
export async function indexRecordFromHead(path: string): Promise<IndexRecord> {
  const { fd, size } = openRegular(path);
  let head;
  try {
    const reader = await openPackage(fdChunks(fd), { subject: path, inflate: headMembers });
    head = reader.head;
    await reader.close();
  } finally {
    closeSync(fd);
  }
  const { info, checksum } = head;
  // Left out, not deleted: a deleted property turns the object into a dictionary (about twice
  // the memory per record of an index of thousands).
  const { dataHash: _, ...fields } = info;
  return { ...fields, extra: [], checksum, fileSize: size, unknownFields: [] };
}

/** Index records for many package files, in input order (see indexRecordFromHead). */
export async function indexRecordsFromHeads(
  paths: readonly string[],
  onRecord?: (done: number, total: number) => void,
): Promise<IndexRecord[]> {
  const out: IndexRecord[] = [];
  for (const p of paths) {
    out.push(await indexRecordFromHead(p));
    onRecord?.(out.length, paths.length);
  }
  return out;
}
