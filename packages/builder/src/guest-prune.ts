// Pruning the cache: guests and fetched packages are evicted least recently
// used first — all guests (--all-guests), those unused for longer than a
// duration, and then more until the cache fits a size cap. A guest a running
// build holds (a live lease) is never taken: it is renamed aside first, its
// leases checked after the rename, and put back if one appeared. Store
// entries whose last guest went are removed with it; a dry run counts the
// same without removing anything.

import { randomBytes } from "node:crypto";
import { lstat, opendir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { cacheUsage, liveLeases, listGuests, type CacheItem, type CacheUsage } from "./guest-cache.js";
import { listStore, sweepStore } from "./guest-store.js";

/** Fetched packages used this recently are kept (a guest may be being assembled from them). */
export const PACKAGE_GRACE_MS = 10 * 60 * 1000;

export interface PruneOptions {
  /** Evict until the cache takes at most this many bytes. */
  maxSize?: number;
  /** Evict what has not been used for this long (ms). */
  olderThanMs?: number;
  /** Evict every guest not in use. */
  allGuests?: boolean;
  dryRun?: boolean;
  now?: number;
  onProgress?: (e: PruneEvent) => void;
}

export type PruneEvent =
  | { kind: "usage"; total: number }
  | { kind: "evict"; item: CacheItem; bytes: number; dryRun: boolean }
  | { kind: "in-use"; item: CacheItem };

export interface PruneResult {
  before: CacheUsage;
  /** Bytes on disk after (estimated for a dry run). */
  after: number;
  freed: number;
  evicted: Array<{ kind: CacheItem["kind"]; name: string; bytes: number; lastUse: string }>;
  inUse: string[];
  /** Store entries no guest linked (left by an interrupted eviction or build). */
  orphans: { files: number; bytes: number };
  dryRun: boolean;
}

interface Tree {
  own: number;
  links: Map<number, number>;
}

/** A guest's own blocks (files only it links) and its links to shared inodes. */
async function scanTree(path: string, acc: Tree = { own: 0, links: new Map() }): Promise<Tree> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return acc;
  if (!st.isDirectory() && st.nlink > 1) acc.links.set(st.ino, (acc.links.get(st.ino) ?? 0) + 1);
  else acc.own += st.blocks * 512;
  if (st.isDirectory()) {
    const d = await opendir(path).catch(() => undefined);
    if (d) for await (const e of d) await scanTree(join(path, e.name), acc);
  }
  return acc;
}

async function candidates(cacheDir: string): Promise<CacheItem[]> {
  const items: CacheItem[] = (await listGuests(cacheDir)).map((g) => ({
    kind: "guest",
    name: g.key,
    path: g.dir,
    lastUse: g.lastUse,
  }));
  const dir = join(cacheDir, "packages");
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith(".") || !name.endsWith(".apk")) continue; // downloads under way have temporary names
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (st?.isFile()) items.push({ kind: "package", name, path: join(dir, name), lastUse: st.mtimeMs });
  }
  // Least recently used first; ties by name, so the order is the same every time.
  return items.sort((a, b) => a.lastUse - b.lastUse || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

interface Links {
  /** Store inode -> links left (the store's own counted). */
  left: Map<number, number>;
  entry: Map<number, { path: string; bytes: number }>;
}

/** Remove (or count, dry) guest `item`; undefined when a build holds it. */
async function evictGuest(cacheDir: string, item: CacheItem, links: Links, dryRun: boolean) {
  if ((await liveLeases(cacheDir, item.name)) > 0) return undefined;
  let path = item.path;
  if (!dryRun) {
    path = join(cacheDir, "guests", `tmp-evict-${randomBytes(6).toString("hex")}`);
    try {
      await rename(item.path, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return 0; // another prune took it
      throw e;
    }
    // A build that leased it between the check and the rename gets it back.
    if ((await liveLeases(cacheDir, item.name)) > 0) {
      await rename(path, item.path).catch(() => rm(path, { recursive: true, force: true }));
      return undefined;
    }
  }
  const tree = await scanTree(path);
  let bytes = tree.own;
  if (!dryRun) await rm(path, { recursive: true, force: true });
  for (const [ino, n] of tree.links) {
    const left = links.left.get(ino);
    if (left === undefined) continue; // shared within the guest only: gone with it (counted below)
    links.left.set(ino, left - n);
    if (left - n > 1) continue;
    const e = links.entry.get(ino)!;
    bytes += e.bytes;
    if (!dryRun) {
      const st = await lstat(e.path).catch(() => undefined);
      if (st && st.ino === ino && st.nlink <= 1) await rm(e.path, { force: true });
    }
  }
  return bytes;
}

export async function pruneCache(cacheDir: string, opts: PruneOptions = {}): Promise<PruneResult> {
  const dryRun = !!opts.dryRun;
  const now = opts.now ?? Date.now();
  const before = await cacheUsage(cacheDir);
  opts.onProgress?.({ kind: "usage", total: before.total });
  const links: Links = { left: new Map(), entry: new Map() };
  for (const e of await listStore(cacheDir)) {
    links.left.set(e.ino, e.nlink);
    links.entry.set(e.ino, { path: e.path, bytes: e.bytes });
  }
  let total = before.total;
  const result: PruneResult = {
    before,
    after: 0,
    freed: 0,
    evicted: [],
    inUse: [],
    orphans: { files: 0, bytes: 0 },
    dryRun,
  };
  for (const item of await candidates(cacheDir)) {
    const old = opts.olderThanMs !== undefined && now - item.lastUse > opts.olderThanMs;
    const over = opts.maxSize !== undefined && total > opts.maxSize;
    if (!(old || over || (opts.allGuests && item.kind === "guest"))) continue;
    // A package fetched in the last minutes may be about to be installed into a guest being assembled.
    if (item.kind === "package" && now - item.lastUse < PACKAGE_GRACE_MS) continue;
    let bytes: number | undefined;
    if (item.kind === "guest") bytes = await evictGuest(cacheDir, item, links, dryRun);
    else {
      bytes = ((await lstat(item.path).catch(() => undefined))?.blocks ?? 0) * 512;
      if (!dryRun) await rm(item.path, { force: true });
    }
    if (bytes === undefined) {
      result.inUse.push(item.name);
      opts.onProgress?.({ kind: "in-use", item });
      continue;
    }
    total -= bytes;
    result.freed += bytes;
    result.evicted.push({ kind: item.kind, name: item.name, bytes, lastUse: new Date(item.lastUse).toISOString() });
    opts.onProgress?.({ kind: "evict", item, bytes, dryRun });
  }
  if (!dryRun) {
    result.orphans = await sweepStore(cacheDir);
    total -= result.orphans.bytes;
    result.freed += result.orphans.bytes;
    await removeStaleTemporaries(cacheDir, now);
  }
  result.after = Math.max(0, total);
  return result;
}

/** Guest directories left by interrupted assemblies or evictions, untouched for a day (a running one is younger). */
async function removeStaleTemporaries(cacheDir: string, now: number): Promise<void> {
  const dir = join(cacheDir, "guests");
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith("tmp-")) continue;
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (st && now - Math.max(st.mtimeMs, st.ctimeMs) > 24 * 3600 * 1000)
      await rm(join(dir, name), { recursive: true, force: true });
  }
}
