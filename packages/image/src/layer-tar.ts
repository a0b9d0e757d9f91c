// The tar stream of an image root's nodes (a layer before compression), and
// the one path order every tree listing uses. Headers and small contents are
// packed into batches of BATCH bytes, so 100,000 tiny files make a few
// hundred chunks downstream instead of 300,000.

import { encodeHeader, type TarHeader } from "@kiln/apk";
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
        b.put(encodeHeader({ ...h, type: "hardlink", linkTarget: first }));
        continue;
      }
      firstOfGroup.set(n.linkGroup, n.path);
    }
    if (n.type !== "file") {
      b.put(encodeHeader(h));
      continue;
    }
    h.size = n.blob!.size;
    b.put(encodeHeader(h));
    let got = 0;
    for await (const c of opts.content(n.blob!)) {
      got += c.length;
      b.put(c);
      if (b.out.length) yield* b.out.splice(0);
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
