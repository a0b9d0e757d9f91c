// The bounded cache: what CACHE holds (hard links counted once), leases on
// the guests running builds use, when each guest and fetched package was
// last used (recorded as the mtime of the guest's completion marker and of
// the package file, never atime), and eviction least recently used first
// until the cache fits a cap. Evicting a guest renames it out of the way
// first and checks its leases after, so a build that leased it meanwhile
// gets it back; store entries no guest links any more go with it.

import { processAlive, KilnError } from "@kiln/core";
import { randomBytes } from "node:crypto";
import { lstat, mkdir, opendir, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const GUEST_MARKER = ".kiln-guest-complete";
export const CACHE_MAX_SIZE_ENV = "KILN_CACHE_MAX_SIZE";
const KINDS = ["store", "guests", "packages", "sources", "indexes", "compiled", "manifests"] as const;

export class CacheError extends KilnError {
  readonly code = "CACHE";
}

export const SIZE_EXPECTED = "expected a size such as 512M, 4G or 1T";

/** "4G", "512M", "1.5T", "268435456" as bytes (powers of 1024); undefined when it is not a size. */
export function readSize(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(raw.trim());
  const n = m ? Math.round(Number(m[1]) * 1024 ** " KMGT".indexOf((m[2] || " ").toUpperCase())) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A size as readSize reads it; `what` names the option or variable in the error. */
export function parseSize(raw: string, what: string): number {
  const n = readSize(raw);
  if (n === undefined) throw new CacheError(`${what}: ${SIZE_EXPECTED}, got ${JSON.stringify(raw)}`);
  return n;
}

/** "7d", "12h", "30m", "90s", "2w" as milliseconds; `what` names the option in the error. */
export function parseDuration(raw: string, what: string): number {
  const m = /^(\d+)\s*([smhdw])$/i.exec(raw.trim());
  if (!m) throw new CacheError(`${what}: expected a duration such as 30m, 12h, 7d or 2w, got ${JSON.stringify(raw)}`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]!.toLowerCase() as "s"]!;
  return Number(m[1]) * unit * 1000;
}

/** The cap from KILN_CACHE_MAX_SIZE, if set. */
export function cacheCapFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env[CACHE_MAX_SIZE_ENV];
  return v === undefined || v === "" ? undefined : parseSize(v, CACHE_MAX_SIZE_ENV);
}

// ---------------------------------------------------------------------------
// Leases and last use

export interface GuestLease {
  release(): Promise<void>;
}

function leaseDir(cacheDir: string, key: string): string {
  return join(cacheDir, "guest-leases", key);
}

/** Mark guest `key` in use by this process until released (taken before the guest is looked at). */
export async function leaseGuest(cacheDir: string, key: string): Promise<GuestLease> {
  const dir = leaseDir(cacheDir, key);
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${process.pid}-${randomBytes(6).toString("hex")}`);
  await writeFile(file, `${process.pid}\n`);
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await rm(file, { force: true });
    },
  };
}

/** Leases of live processes on `key`; those of processes that have ended are removed. */
export async function liveLeases(cacheDir: string, key: string): Promise<number> {
  const dir = leaseDir(cacheDir, key);
  let n = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1]);
    if (pid > 0 && processAlive(pid)) n++;
    else await rm(join(dir, name), { force: true });
  }
  return n;
}

/** Record that a cached file or guest marker was used now. */
export async function touch(path: string, now = new Date()): Promise<void> {
  await utimes(path, now, now).catch(() => undefined);
}

// ---------------------------------------------------------------------------
// Usage

export interface GuestInfo {
  key: string;
  dir: string;
  complete: boolean;
  lastUse: number;
  inUse: boolean;
}

export interface CacheItem {
  kind: "guest" | "package";
  name: string;
  path: string;
  lastUse: number;
}

export interface CacheUsage {
  /** Bytes on disk per kind, each inode counted once (store first, so a guest counts only what it does not share). */
  kinds: Record<string, number>;
  total: number;
  /** Bytes the guests would take as independent copies (their files' sizes summed). */
  guestsApparent: number;
  guests: number;
}

interface Walk {
  bytes: number;
  apparent: number;
  /** Links from this tree to each inode with more than one link. */
  links: Map<number, number>;
}

async function walk(path: string, seen: Set<number> | undefined, acc: Walk): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  if (st.isFile()) acc.apparent += st.size;
  if (st.nlink > 1 && !st.isDirectory()) acc.links.set(st.ino, (acc.links.get(st.ino) ?? 0) + 1);
  if (!seen || !seen.has(st.ino) || st.isDirectory()) {
    seen?.add(st.ino);
    acc.bytes += st.blocks * 512;
  }
  if (!st.isDirectory()) return;
  const d = await opendir(path).catch(() => undefined);
  if (d) for await (const e of d) await walk(join(path, e.name), seen, acc);
}

function newWalk(): Walk {
  return { bytes: 0, apparent: 0, links: new Map() };
}

/** What the cache holds, per kind, hard links counted once. */
export async function cacheUsage(cacheDir: string): Promise<CacheUsage> {
  const seen = new Set<number>();
  const kinds: Record<string, number> = {};
  let apparent = 0;
  for (const k of KINDS) {
    const w = newWalk();
    await walk(join(cacheDir, k), seen, w);
    kinds[k] = w.bytes;
    if (k === "guests") apparent = w.apparent;
  }
  const other = newWalk();
  for (const name of await readdir(cacheDir).catch(() => [] as string[]))
    if (!(KINDS as readonly string[]).includes(name)) await walk(join(cacheDir, name), seen, other);
  kinds.other = other.bytes;
  const guests = (await listGuests(cacheDir)).length;
  return {
    kinds,
    total: Object.values(kinds).reduce((a, b) => a + b, 0),
    guestsApparent: apparent,
    guests,
  };
}

/** The complete guests (and crash remnants), with when each was last used and whether a build holds it. */
export async function listGuests(cacheDir: string): Promise<GuestInfo[]> {
  const dir = join(cacheDir, "guests");
  const out: GuestInfo[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{64}$/.test(name)) continue;
    const marker = await stat(join(dir, name, GUEST_MARKER)).catch(() => undefined);
    const st = marker ?? (await lstat(join(dir, name)).catch(() => undefined));
    if (!st) continue;
    out.push({
      key: name,
      dir: join(dir, name),
      complete: !!marker,
      lastUse: st.mtimeMs,
      inUse: (await liveLeases(cacheDir, name)) > 0,
    });
  }
  return out;
}
