// The tar stream of an image root's nodes (a layer before compression), and
// the one path order every tree listing uses. Headers and small contents are
// packed into batches of BATCH bytes, so 100,000 tiny files make a few
// hundred chunks downstream instead of 300,000.

import { posix } from "node:path";
import { encodeHeader, encodeHeaderInto, type TarHeader } from "@kiln/apk";
import type { StoredBlob } from "./spool.js";

/** Output chunk size for headers and small contents. */
const BATCH = 256 * 1024;

/** The fields of a tree node the tar needs (root.ts's TreeNode). */
export interface TarNode {
  path: string;
  type: "dir" | "file" | "symlink" | "char" | "block" | "fifo";
  mode: number;
  uid: number;
  gid: number;
  xattrs?: Record<string, Buffer>;
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  blob?: StoredBlob;
  linkGroup?: number;
}

/**
 * Compare two paths by their UTF-8 bytes (tar and apk order), without
 * encoding them: UTF-16 code-unit order differs from code-point (= UTF-8
 * byte) order only between surrogates and U+E000..U+FFFF, fixed up here.
 */
export function comparePaths(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x < 0xe000 ? x + 0x2000 : x - 0x800;
      y = y < 0xe000 ? y + 0x2000 : y - 0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** Packs small pieces into fresh BATCH-sized buffers; large pieces pass through as they are. */
class Batcher {
  private buf = Buffer.allocUnsafe(BATCH);
  private n = 0;
  readonly out: Uint8Array[] = [];

  flush(): void {
    if (this.n === 0) return;
    // The buffer handed on is never written again: a new one is taken.
    this.out.push(this.buf.subarray(0, this.n));
    this.buf = Buffer.allocUnsafe(BATCH);
    this.n = 0;
  }

  put(b: Uint8Array): void {
    if (b.length > BATCH - this.n) {
      this.flush();
      if (b.length >= BATCH / 2) {
        this.out.push(b);
        return;
      }
    }
    this.buf.set(b, this.n);
    this.n += b.length;
  }

  /** The header blocks of `h`, encoded straight into the batch. */
  header(h: TarHeader): void {
    let n = encodeHeaderInto(h, this.buf, this.n);
    if (n < 0) {
      this.flush();
      n = encodeHeaderInto(h, this.buf, 0);
      // Longer than a batch (PAX records of large xattrs): a buffer of its own.
      if (n < 0) {
        this.out.push(encodeHeader(h));
        return;
      }
    }
    this.n += n;
  }

  zeros(count: number): void {
    if (count > BATCH - this.n) this.flush();
    this.buf.fill(0, this.n, this.n + count);
    this.n += count;
  }
}

export interface TarOptions {
  mtime: number;
  /** Check a path before it is written (throws to refuse it). */
  checkPath: (path: string) => void;
  /** A file node's content. */
  content: (blob: StoredBlob) => AsyncIterable<Uint8Array>;
  /** A file node's content when it is at hand (in memory), without waiting; else undefined. */
  contentSync?: (blob: StoredBlob) => Uint8Array | undefined;
}

function headerOf(n: TarNode, mtime: number): TarHeader {
  const h: TarHeader = {
    path: n.path + (n.type === "dir" ? "/" : ""),
    type: n.type,
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    size: 0,
    mtime,
  };
  if (n.xattrs) h.pax = Object.fromEntries(Object.entries(n.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v]));
  if (n.type === "symlink") h.linkTarget = n.linkTarget!;
  if (n.type === "char" || n.type === "block") {
    h.devMajor = n.devMajor ?? 0;
    h.devMinor = n.devMinor ?? 0;
  }
  return h;
}

/** The tar of `nodes` (sorted by path; hard-link groups lead with their first path), ending with two zero blocks. */
export async function* nodesTar(nodes: TarNode[], opts: TarOptions): AsyncGenerator<Uint8Array> {
  const firstOfGroup = new Map<number, string>();
  const b = new Batcher();
  for (const n of nodes) {
    opts.checkPath(n.path);
    const h = headerOf(n, opts.mtime);
    if (n.type === "file" && n.linkGroup !== undefined) {
      const first = firstOfGroup.get(n.linkGroup);
      if (first !== undefined) {
        h.type = "hardlink";
        h.linkTarget = first;
        b.header(h);
        continue;
      }
      firstOfGroup.set(n.linkGroup, n.path);
    }
    if (n.type !== "file") {
      b.header(h);
      continue;
    }
    h.size = n.blob!.size;
    b.header(h);
    const whole = opts.contentSync?.(n.blob!);
    let got = 0;
    if (whole) {
      got = whole.length;
      b.put(whole);
    } else {
      for await (const c of opts.content(n.blob!)) {
        got += c.length;
        b.put(c);
        if (b.out.length) yield* b.out.splice(0);
      }
    }
    if (got !== h.size) throw new Error(`/${n.path}: its stored content has ${got} bytes, ${h.size} expected`);
    const pad = (512 - (h.size % 512)) % 512;
    if (pad) b.zeros(pad);
    if (b.out.length) yield* b.out.splice(0);
  }
  b.zeros(1024);
  b.flush();
  yield* b.out.splice(0);
}

/** `chosen` (sorted) with every parent directory of each that `get` has, sorted. */
export function withParents<T extends TarNode>(chosen: T[], get: (path: string) => T | undefined): T[] {
  const set = new Map(chosen.map((n) => [n.path, n]));
  for (const n of chosen) {
    for (let p = posix.dirname(n.path); p !== "." && p !== ""; p = posix.dirname(p)) {
      if (set.has(p)) break;
      const d = get(p);
      if (d) set.set(p, d);
    }
  }
  // Already in order when nothing was added (sorting sorted input is one linear pass).
  return [...set.values()].sort((a, b) => comparePaths(a.path, b.path));
}

/**
 * A path check for sorted paths: they come directory by directory, so each
 * directory is checked whole (`checkWhole`) once in a row and the entries in
 * it by their names (`checkName`); a refused name is checked whole again, for
 * the error naming the whole path.
 */
export function sortedPathCheck(
  checkWhole: (path: string) => void,
  checkName: (name: string) => void,
): (path: string) => void {
  let checkedDir: string | undefined;
  return (path) => {
    const slash = path.lastIndexOf("/");
    const dir = slash < 0 ? undefined : path.slice(0, slash);
    if (dir === undefined || dir !== checkedDir) {
      checkWhole(path);
      checkedDir = dir;
      return;
    }
    try {
      checkName(path.slice(slash + 1));
    } catch {
      checkWhole(path);
    }
  };
}

/** apk's lib/apk/db/scripts.tar: the install scripts by name, sorted. */
export function scriptsTar(scripts: Array<{ name: string; body: Buffer }>): Buffer {
  const parts: Uint8Array[] = [];
  for (const s of [...scripts].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    parts.push(
      encodeHeader({ path: s.name, type: "file", mode: 0o755, uid: 0, gid: 0, size: s.body.length, mtime: 0 }),
      s.body,
      new Uint8Array((512 - (s.body.length % 512)) % 512),
    );
  }
  parts.push(new Uint8Array(1024));
  return Buffer.concat(parts);
}
