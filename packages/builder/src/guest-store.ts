// The content store build guests share: CACHE/store/AA/SHA256-MODE, one file
// per content and mode, hard-linked into every guest that holds it, so 80
// guests of mostly the same toolchain cost about one copy of it. A guest is
// mounted read-only in the sandbox (and a hard link cannot leave its mount),
// so no build step can change a store file; an entry whose content no longer
// hashes to its name (damage on the host) is detected when a guest would
// link it, moved out of the way and written again from the package. Entries
// are written under a temporary name and renamed into place; one that no
// guest links any more (link count 1) is garbage for `sweepStore`.

import { createHash, randomBytes } from "node:crypto";
import { createReadStream, linkSync, lstatSync } from "node:fs";
import { chmod, link, lstat, mkdir, opendir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CheckLog, forgetLoadedLogs } from "./store-checks.js";

/** A content as the image root holds it (SHA-1 and size), with a way to read it. */
export interface StoreSource {
  sha1: string;
  size: number;
}

export interface StoreReader {
  stream(blob: StoreSource): AsyncIterable<Uint8Array>;
  copyTo(blob: StoreSource, dest: string): Promise<void>;
  /** Like copyTo, for a file that is chmod-ed and then never written: may hard-link the reader's own file there. */
  giveTo?(blob: StoreSource, dest: string): Promise<void>;
}

export interface StoreStats {
  /** Files linked from an entry that was already there. */
  shared: number;
  /** Entries written. */
  added: number;
  /** Entries found damaged (content not matching the name), replaced. */
  corrupt: string[];
  /** Files copied instead (empty files, or an entry at the file system's link limit). */
  copied: number;
  /** Existing entries read and hashed to check them (once per entry and process, unless it changed). */
  checked: number;
}

const ENTRY_RE = /^([0-9a-f]{64})-([0-7]{1,5})$/;

export function storeDir(cacheDir: string): string {
  return join(cacheDir, "store");
}

async function sha256Of(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash("sha256");
  for await (const c of chunks) h.update(c);
  return h.digest("hex");
}

/** SHA-256 of a file's content. */
export function hashFile(path: string): Promise<string> {
  return sha256Of(createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Uint8Array>);
}

/** What an entry's name says: its SHA-256 and mode, or undefined for a name that is not an entry. */
export function parseEntryName(name: string): { sha256: string; mode: number } | undefined {
  const m = ENTRY_RE.exec(name);
  return m ? { sha256: m[1]!, mode: parseInt(m[2]!, 8) } : undefined;
}

const VERIFIED = new Map<string, string>();

/**
 * What an entry was checked as: inode, modification time and size. Not the
 * change time: every hard link made to the entry (each guest that holds it)
 * changes that, which made every placement re-read and re-hash the entry.
 */
function stampOf(st: { ino: number; mtimeMs: number; size: number }): string {
  return `${st.ino}:${st.mtimeMs}:${st.size}`;
}
/** Forget every check this process made or read (tests: what a new process knows). */
export function forgetChecks(): void {
  VERIFIED.clear();
  forgetLoadedLogs();
}

/** Verified entries remembered at most (then forgotten, and re-hashed when next linked). */
const VERIFIED_MAX = 500_000;

export class GuestStore {
  readonly dir: string;
  readonly stats: StoreStats = { shared: 0, added: 0, corrupt: [], copied: 0, checked: 0 };
  /**
   * SHA-1 (computed or verified by the image root's spool) to SHA-256, for this
   * assembly only: the spool already keys by SHA-1 within one root, but across
   * guests only SHA-256 decides (a SHA-1 collision in one package cannot pick
   * another guest's content).
   */
  private readonly sha256BySha1 = new Map<string, string>();
  /** Entries verified in this process (shared by every guest it assembles), by inode, modification time and size: re-hashed only when changed. */
  private readonly verified = VERIFIED;
  /** The same record across processes (store-checks.ts). */
  readonly checks: CheckLog;

  constructor(cacheDir: string) {
    this.dir = storeDir(cacheDir);
    this.checks = new CheckLog(this.dir, VERIFIED);
  }

  /** Make `sha1` known to hash to `sha256` in this assembly (from a package manifest), so placing it reads nothing. */
  seed(sha1: string, sha256: string): void {
    this.sha256BySha1.set(sha1, sha256);
  }

  /** The SHA-256 this assembly knows for `sha1` (computed when a file was placed, or seeded). */
  sha256For(sha1: string): string | undefined {
    return this.sha256BySha1.get(sha1);
  }

  entryPath(sha256: string, mode: number): string {
    return join(this.dir, sha256.slice(0, 2), `${sha256}-${(mode & 0o7777).toString(8)}`);
  }

  /**
   * Make sure `blob` with `mode` is in the store (for a package manifest: a
   * file another package's replaced in this guest); returns its SHA-256.
   * The entry is linked by no guest yet, so a sweep may take it; a manifest
   * naming it is then not used.
   */
  async keep(reader: StoreReader, blob: StoreSource, mode: number): Promise<string> {
    let sha256 = this.sha256BySha1.get(blob.sha1);
    if (!sha256) {
      sha256 = await sha256Of(reader.stream(blob));
      this.sha256BySha1.set(blob.sha1, sha256);
    }
    const entry = this.entryPath(sha256, mode);
    if (!(await this.usable(entry, sha256, blob.size))) await this.add(reader, blob, entry, mode);
    return sha256;
  }

  /** Put `blob` at `dest` (a new path) with `mode`: a hard link to its store entry, made first if needed. */
  async place(reader: StoreReader, blob: StoreSource, dest: string, mode: number): Promise<void> {
    if (blob.size === 0) {
      // Empty files cost no data blocks: not worth a link (and thousands would crowd one inode's link count).
      await writeFile(dest, "");
      await chmod(dest, mode);
      this.stats.copied++;
      return;
    }
    let sha256 = this.sha256BySha1.get(blob.sha1);
    if (!sha256) {
      sha256 = await sha256Of(reader.stream(blob));
      this.sha256BySha1.set(blob.sha1, sha256);
    }
    const entry = this.entryPath(sha256, mode);
    // An entry can vanish between the check and the link (a sweep took it): then it is written again.
    for (let attempt = 0; attempt < 3; attempt++) {
      const fresh = !(await this.usable(entry, sha256, blob.size)) && (await this.add(reader, blob, entry, mode));
      try {
        await link(entry, dest);
        if (fresh) this.stats.added++;
        else this.stats.shared++;
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT") continue;
        if (code !== "EMLINK" && code !== "EXDEV") throw e;
        break;
      }
    }
    await reader.copyTo(blob, dest);
    await chmod(dest, mode);
    this.stats.copied++;
  }

  /**
   * place's fast path: when `blob`'s SHA-256 is known and its entry was
   * checked in this process and has not changed since (same inode,
   * modification time and size), link it at `dest` without waiting and return true;
   * anything else (empty files, an entry to write or re-check, a failed link)
   * returns false and is left to place.
   */
  placeSync(blob: StoreSource, dest: string, mode: number): boolean {
    if (blob.size === 0) return false;
    const sha256 = this.sha256BySha1.get(blob.sha1);
    if (!sha256) return false;
    const entry = this.entryPath(sha256, mode);
    const stamp = this.verified.get(entry);
    if (stamp === undefined) return false;
    const st = lstatSync(entry, { throwIfNoEntry: false });
    if (!st?.isFile() || stampOf(st) !== stamp) return false;
    try {
      linkSync(entry, dest);
    } catch {
      return false;
    }
    this.stats.shared++;
    return true;
  }

  /** Whether `entry` is there with the right content; a damaged one is removed (and recorded). */
  async usable(entry: string, sha256: string, size: number): Promise<boolean> {
    const st = await lstat(entry).catch(() => undefined);
    if (!st) return false;
    const stamp = stampOf(st);
    if (st.isFile() && this.verified.get(entry) === stamp) return true;
    await this.checks.load();
    if (st.isFile() && this.verified.get(entry) === stamp) return true;
    if (st.isFile() && st.size === size) this.stats.checked++;
    if (st.isFile() && st.size === size && (await hashFile(entry).catch(() => "")) === sha256) {
      if (this.verified.size >= VERIFIED_MAX) this.verified.clear();
      this.verified.set(entry, stamp);
      this.checks.record(entry, stamp);
      return true;
    }
    this.stats.corrupt.push(entry);
    // Moved aside first: guests that link the damaged inode keep it, new ones get a good copy.
    const aside = `${entry}.corrupt-${randomBytes(4).toString("hex")}`;
    await rename(entry, aside).catch(() => undefined);
    await rm(aside, { force: true });
    return false;
  }

  private async add(reader: StoreReader, blob: StoreSource, entry: string, mode: number): Promise<true> {
    const tmpDir = join(this.dir, "tmp");
    await mkdir(tmpDir, { recursive: true, mode: 0o700 });
    await mkdir(join(entry, ".."), { recursive: true, mode: 0o700 });
    const tmp = join(tmpDir, `${process.pid}-${randomBytes(6).toString("hex")}`);
    try {
      await (reader.giveTo ? reader.giveTo(blob, tmp) : reader.copyTo(blob, tmp));
      await chmod(tmp, mode);
      await rename(tmp, entry);
    } finally {
      await rm(tmp, { force: true });
    }
    const st = await lstat(entry).catch(() => undefined);
    if (st) {
      this.verified.set(entry, stampOf(st));
      this.checks.record(entry, stampOf(st));
    }
    return true;
  }
}

export interface StoreEntry {
  path: string;
  sha256: string;
  mode: number;
  ino: number;
  nlink: number;
  /** Bytes on disk (blocks). */
  bytes: number;
}

/** Every entry of the store (names that are not entries are skipped). */
export async function listStore(cacheDir: string): Promise<StoreEntry[]> {
  const dir = storeDir(cacheDir);
  const out: StoreEntry[] = [];
  const top = await opendir(dir).catch(() => undefined);
  if (!top) return out;
  for await (const d of top) {
    if (!d.isDirectory() || !/^[0-9a-f]{2}$/.test(d.name)) continue;
    for await (const e of await opendir(join(dir, d.name))) {
      const parsed = parseEntryName(e.name);
      if (!parsed || !e.isFile()) continue;
      const path = join(dir, d.name, e.name);
      const st = await lstat(path).catch(() => undefined);
      if (st) out.push({ path, ...parsed, ino: st.ino, nlink: st.nlink, bytes: st.blocks * 512 });
    }
  }
  return out;
}

/** Remove entries no guest links any more; returns what they held. */
export async function sweepStore(
  cacheDir: string,
  opts: { dryRun?: boolean } = {},
): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const e of await listStore(cacheDir)) {
    if (e.nlink > 1) continue;
    files++;
    bytes += e.bytes;
    if (!opts.dryRun) await rm(e.path, { force: true });
  }
  return { files, bytes };
}

/** Re-hash every entry: the ones whose content does not match their name. */
export async function verifyStore(cacheDir: string): Promise<string[]> {
  const bad: string[] = [];
  for (const e of await listStore(cacheDir)) if ((await hashFile(e.path)) !== e.sha256) bad.push(e.path);
  return bad;
}
