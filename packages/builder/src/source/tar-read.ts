// Reading tar streams (ustar, GNU and PAX) entry by entry, without holding
// an entry's data in memory.

import { SourceError } from "./errors.js";

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface TarEntry {
  /** Name as stored (PAX/GNU long names applied), not normalised. */
  path: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Symlink target or hardlink source, as stored. */
  linkname: string;
}

/** Exact-size reads over an async byte stream. */
class ByteReader {
  private chunks: Buffer[] = [];
  private avail = 0;
  private ended = false;
  /** Whether the stream has produced any byte at all. */
  sawData = false;
  private readonly it: AsyncIterator<Buffer>;
  constructor(
    src: AsyncIterable<Buffer>,
    private readonly subject: string,
  ) {
    this.it = src[Symbol.asyncIterator]();
  }
  private async fill(n: number): Promise<void> {
    while (this.avail < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else if (r.value.length) {
        this.sawData = true;
        this.chunks.push(r.value);
        this.avail += r.value.length;
      }
    }
  }
  /** Exactly n bytes, or null at a clean end of stream; throws if the stream ends inside. */
  async read(n: number, what: string): Promise<Buffer | null> {
    await this.fill(n);
    if (this.avail === 0) return null;
    if (this.avail < n) throw new SourceError("BAD_ARCHIVE", `${this.subject}: archive is truncated (in ${what})`);
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, n - off);
      c.copy(out, off, 0, take);
      off += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.avail -= n;
    return out;
  }
  /** Yield exactly n bytes in pieces. */
  async *take(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.avail === 0) {
        await this.fill(1);
        if (this.avail === 0)
          throw new SourceError("BAD_ARCHIVE", `${this.subject}: archive is truncated (in ${what})`);
      }
      const c = this.chunks[0]!;
      if (c.length <= left) {
        this.chunks.shift();
        this.avail -= c.length;
        left -= c.length;
        yield c;
      } else {
        this.chunks[0] = c.subarray(left);
        this.avail -= left;
        const piece = c.subarray(0, left);
        left = 0;
        yield piece;
      }
    }
  }
  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.take(n, what)) {
      /* discard */
    }
  }
  async drain(): Promise<void> {
    this.chunks = [];
    this.avail = 0;
    while (!this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
    }
  }
}

function cstr(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const z = s.indexOf(0);
  return (z < 0 ? s : s.subarray(0, z)).toString("utf8");
}

function tarNumber(b: Buffer, start: number, len: number, field: string, subject: string): number {
  const f = b.subarray(start, start + len);
  if (f[0]! & 0x80) {
    // GNU base-256: big-endian two's complement, high bit of the first byte is the marker.
    let v = BigInt(f[0]! & 0x7f);
    const negative = (f[0]! & 0x40) !== 0;
    for (let i = 1; i < f.length; i++) v = (v << 8n) | BigInt(f[i]!);
    if (negative) v -= 1n << BigInt(f.length * 8 - 1);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      throw new SourceError("BAD_ARCHIVE", `${subject}: tar ${field} out of range`);
    return Number(v);
  }
  const s = f.toString("latin1").replace(/\0.*$/s, "").trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s))
    throw new SourceError("BAD_ARCHIVE", `${subject}: bad octal tar ${field} ${JSON.stringify(s)}`);
  return parseInt(s, 8);
}

function parsePaxRecords(body: Buffer, subject: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < body.length) {
    if (body[i] === 0) break;
    const sp = body.indexOf(0x20, i);
    if (sp < 0) throw new SourceError("BAD_ARCHIVE", `${subject}: malformed PAX record`);
    const len = Number(body.subarray(i, sp).toString("latin1"));
    if (!Number.isInteger(len) || len <= sp - i + 1 || i + len > body.length)
      throw new SourceError("BAD_ARCHIVE", `${subject}: malformed PAX record length`);
    const rec = body.subarray(sp + 1, i + len - 1).toString("utf8"); // minus the trailing newline
    const eq = rec.indexOf("=");
    if (eq <= 0) throw new SourceError("BAD_ARCHIVE", `${subject}: malformed PAX record`);
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

const MAX_META = 1 << 20;

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** A header block's checksum: the unsigned sum with the checksum field read as spaces (signed sums from old tars accepted too). */
function checksumOk(header: Buffer, subject: string): boolean {
  const stored = tarNumber(header, 148, 8, "checksum", subject);
  let u = 0;
  let s = 0;
  for (let i = 0; i < 512; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : header[i]!;
    u += c;
    s += c > 127 ? c - 256 : c;
  }
  return stored === u || stored === s;
}

interface HeaderState {
  globalPax: Map<string, string>;
}

interface RawHeader {
  header: Buffer;
  typeflag: string;
  /** This entry's PAX records over the global ones. */
  pax: Map<string, string>;
  longName?: string;
  longLink?: string;
}

/** The next entry's header block with the extended headers (PAX, GNU long names) before it; null at the end. */
async function readHeader(r: ByteReader, subject: string, state: HeaderState): Promise<RawHeader | null> {
  const pax = new Map<string, string>();
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const header = await r.read(512, "a header");
    if (header === null) return null; // end of stream without the zero blocks: accept
    if (isZero(header)) return null;
    if (!checksumOk(header, subject))
      throw new SourceError("BAD_ARCHIVE", `${subject}: tar header checksum mismatch (not a tar archive, or corrupt)`);
    const typeflag = String.fromCharCode(header[156]!);
    const size = tarNumber(header, 124, 12, "size", subject);
    if (typeflag !== "x" && typeflag !== "g" && typeflag !== "L" && typeflag !== "K") {
      const merged = new Map([...state.globalPax, ...pax]);
      return {
        header,
        typeflag,
        pax: merged,
        ...(longName !== undefined ? { longName } : {}),
        ...(longLink !== undefined ? { longLink } : {}),
      };
    }
    if (size > MAX_META)
      throw new SourceError("BAD_ARCHIVE", `${subject}: extended header of ${size} bytes is too large`);
    const body =
      (await r.read(size + ((512 - (size % 512)) % 512), "an extended header"))?.subarray(0, size) ?? Buffer.alloc(0);
    if (typeflag === "x") for (const [k, v] of parsePaxRecords(body, subject)) pax.set(k, v);
    else if (typeflag === "g") {
      state.globalPax = new Map(state.globalPax);
      for (const [k, v] of parsePaxRecords(body, subject)) state.globalPax.set(k, v);
    } else if (typeflag === "L") longName = cstr(body, 0, body.length);
    else longLink = cstr(body, 0, body.length);
  }
}

const TYPEFLAGS: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  D: "dir",
  "6": "fifo",
};

/** The entry a header describes, PAX records and GNU long names applied (entry undefined for a volume label), and its data size. */
function headerEntry(raw: RawHeader, subject: string): { entry: TarEntry | undefined; size: number } {
  const { header: h, typeflag, pax } = raw;
  const isUstar = h.subarray(257, 263).toString("latin1") === "ustar\0";
  let name = cstr(h, 0, 100);
  if (isUstar) {
    const prefix = cstr(h, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  if (raw.longName !== undefined) name = raw.longName;
  if (pax.has("path")) name = pax.get("path")!;
  let linkname = raw.longLink ?? cstr(h, 157, 100);
  if (pax.has("linkpath")) linkname = pax.get("linkpath")!;
  let size = tarNumber(h, 124, 12, "size", subject);
  if (pax.has("size")) {
    const v = pax.get("size")!;
    if (!/^\d+$/.test(v)) throw new SourceError("BAD_ARCHIVE", `${subject}: bad PAX size ${JSON.stringify(v)}`);
    size = Number(v);
  }
  let mtime = tarNumber(h, 136, 12, "mtime", subject);
  if (pax.has("mtime")) {
    const v = Number(pax.get("mtime"));
    if (Number.isFinite(v)) mtime = v;
  }
  let uid = tarNumber(h, 108, 8, "uid", subject);
  let gid = tarNumber(h, 116, 8, "gid", subject);
  if (pax.has("uid") && /^\d+$/.test(pax.get("uid")!)) uid = Number(pax.get("uid"));
  if (pax.has("gid") && /^\d+$/.test(pax.get("gid")!)) gid = Number(pax.get("gid"));
  const mode = tarNumber(h, 100, 8, "mode", subject) & 0o7777;
  if (typeflag === "V") return { entry: undefined, size };
  let type = TYPEFLAGS[typeflag];
  if (type === undefined)
    throw new SourceError(
      "BAD_ARCHIVE",
      `${subject}: unsupported tar entry type ${JSON.stringify(typeflag)} for ${JSON.stringify(name)}`,
    );
  if (type === "file" && typeflag === "\0" && name.endsWith("/")) type = "dir";
  return { entry: { path: name, type, mode, uid, gid, size, mtime, linkname }, size };
}

/**
 * Iterate over tar entries (ustar, GNU and PAX). Each entry's data must be
 * consumed (or skipped) through `data` before asking for the next entry.
 */
export async function* readTar(
  src: AsyncIterable<Buffer>,
  subject: string,
): AsyncGenerator<{ entry: TarEntry; data: () => AsyncGenerator<Buffer> }> {
  const r = new ByteReader(src, subject);
  const state: HeaderState = { globalPax: new Map() };
  for (;;) {
    const raw = await readHeader(r, subject, state);
    // Not even the end-of-archive blocks: an empty stream is no tar (and hid lost data once).
    if (raw === null && !r.sawData)
      throw new SourceError("BAD_ARCHIVE", `${subject}: empty archive (no tar data at all)`);
    if (raw === null) return;
    const { entry: e, size } = headerEntry(raw, subject);
    if (e === undefined) {
      await r.skip(size + ((512 - (size % 512)) % 512), "a volume label");
      continue;
    }
    const dataSize = e.type === "file" || raw.typeflag === "D" ? size : 0;
    const pad = (512 - (dataSize % 512)) % 512;
    let consumed = false;
    const entry: TarEntry = { ...e, size: e.type === "file" ? size : 0 };
    const data = async function* (): AsyncGenerator<Buffer> {
      if (consumed) return;
      consumed = true;
      yield* r.take(dataSize, JSON.stringify(e.path));
      if (pad) await r.skip(pad, "padding");
    };
    yield { entry, data };
    if (!consumed) {
      consumed = true;
      await r.skip(dataSize + pad, JSON.stringify(e.path));
    }
  }
}
