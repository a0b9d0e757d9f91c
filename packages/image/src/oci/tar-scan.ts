// Reading the entries' names of an (uncompressed) tar stream as it goes by:
// which paths are directories and which are symbolic links (and to where),
// and the OCI whiteouts. Used on a base image's layers, so that kiln's layer on
// top keeps the base's directory links (a merged-usr /lib → usr/lib stays a
// link instead of becoming a directory that hides the base's /usr/lib).
// Bounded: extended (pax, GNU long name) headers of at most 1 MiB.

import { posix } from "node:path";

const BLOCK = 512;
const MAX_EXTENDED = 1 << 20;

export interface TarLink {
  target: string;
  uid: number;
  gid: number;
}

export class TarScanError extends Error {}

/** Entry names of a tar stream fed in chunks. */
export class TarScanner {
  readonly dirs = new Set<string>();
  readonly links = new Map<string, TarLink>();
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of the current entry's data still to skip (or to collect, for extended headers). */
  private skip = 0;
  private collecting: { type: string; parts: Buffer[]; left: number } | undefined;
  private pending: { path?: string; linkpath?: string } = {};
  private ended = false;

  /** Start the next layer's stream (entries of later layers override earlier ones'). */
  nextStream(): void {
    this.buf = Buffer.alloc(0);
    this.skip = 0;
    this.collecting = undefined;
    this.pending = {};
    this.ended = false;
  }

  feed(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    while (!this.ended) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, this.buf.length - off);
        if (this.collecting) this.collect(this.buf.subarray(off, off + n));
        off += n;
        this.skip -= n;
        if (this.skip > 0) break;
        if (this.collecting) this.finishExtended();
        continue;
      }
      if (this.buf.length - off < BLOCK) break;
      this.header(this.buf.subarray(off, off + BLOCK));
      off += BLOCK;
    }
    this.buf = this.buf.subarray(off);
  }

  private collect(b: Buffer): void {
    const c = this.collecting!;
    if (c.left > 0) c.parts.push(Buffer.from(b.subarray(0, Math.min(b.length, c.left))));
    c.left -= b.length;
  }

  private finishExtended(): void {
    const c = this.collecting!;
    const data = Buffer.concat(c.parts);
    if (c.type === "x") {
      const rec = parsePax(data);
      if (rec.path !== undefined) this.pending.path = rec.path;
      if (rec.linkpath !== undefined) this.pending.linkpath = rec.linkpath;
    } else if (c.type === "L") this.pending.path = cstr(data, 0, data.length);
    else if (c.type === "K") this.pending.linkpath = cstr(data, 0, data.length);
    this.collecting = undefined;
  }

  private header(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      this.ended = true;
      return;
    }
    const size = octal(h, 124, 12);
    const type = String.fromCharCode(h[156] || 48);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === "x" || type === "L" || type === "K") {
      if (size > MAX_EXTENDED) throw new TarScanError(`an extended tar header of ${size} bytes`);
      this.collecting = { type, parts: [], left: size };
      this.skip = padded;
      if (padded === 0) this.collecting = undefined;
      return;
    }
    if (type === "g") {
      this.skip = padded;
      return;
    }
    const magic = cstr(h, 257, 6);
    const prefix = magic.startsWith("ustar") ? cstr(h, 345, 155) : "";
    const raw = this.pending.path ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    const linkname = this.pending.linkpath ?? cstr(h, 157, 100);
    this.pending = {};
    this.skip = type === "1" || type === "2" || type === "5" ? 0 : padded;
    const path = clean(raw);
    if (path === "") return;
    const base = posix.basename(path);
    if (base.startsWith(".wh.")) {
      const gone = posix.join(posix.dirname(path), base.slice(4));
      this.dirs.delete(gone);
      this.links.delete(gone);
      return;
    }
    this.dirs.delete(path);
    this.links.delete(path);
    if (type === "5") this.dirs.add(path);
    else if (type === "2") this.links.set(path, { target: linkname, uid: octal(h, 108, 8), gid: octal(h, 116, 8) });
  }

  /** The links whose target is a directory of the stream(s) (through at most a few links), by path. */
  directoryLinks(): Map<string, TarLink> {
    const out = new Map<string, TarLink>();
    const isDir = (p: string, depth: number): boolean => {
      if (this.dirs.has(p)) return true;
      const l = this.links.get(p);
      return l !== undefined && depth < 8 && isDir(linkTargetPath(p, l.target), depth + 1);
    };
    for (const [p, l] of this.links) if (isDir(linkTargetPath(p, l.target), 0)) out.set(p, l);
    return out;
  }
}

/** A link's target as a root-relative path. */
function linkTargetPath(path: string, target: string): string {
  return clean(target.startsWith("/") ? target : posix.join(posix.dirname(path), target));
}

function clean(p: string): string {
  const n = posix.normalize(`/${p}`);
  return n.replace(/^\/+/, "").replace(/\/+$/, "");
}

function cstr(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z < 0 ? s : s.subarray(0, z)).toString("utf8");
}

function octal(b: Buffer, off: number, len: number): number {
  if (b[off]! & 0x80) {
    let n = 0;
    for (let i = off + 1; i < off + len; i++) n = n * 256 + b[i]!;
    return n;
  }
  const s = cstr(b, off, len).trim();
  return s === "" ? 0 : parseInt(s, 8) || 0;
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let off = 0;
  while (off < data.length) {
    const sp = data.indexOf(0x20, off);
    if (sp < 0) break;
    const len = parseInt(data.subarray(off, sp).toString("ascii"), 10);
    if (!Number.isSafeInteger(len) || len <= 0 || off + len > data.length) break;
    const rec = data.subarray(sp + 1, off + len - 1).toString("utf8");
    const eq = rec.indexOf("=");
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    off += len;
  }
  return out;
}
