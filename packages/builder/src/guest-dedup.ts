// Bringing guests assembled before the store (each file its own copy) into
// it: every regular file is hashed and replaced by a hard link to its store
// entry (or becomes the entry when there is none yet). A replacement is a
// link under a temporary name renamed over the file, so a build running in
// the guest sees the same content throughout; each guest is leased while it
// is converted, so a prune does not take it meanwhile.

import { randomBytes } from "node:crypto";
import { link, lstat, mkdir, opendir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { GUEST_MARKER, leaseGuest, listGuests } from "./guest-cache.js";
import { GuestStore, hashFile } from "./guest-store.js";

export interface DedupResult {
  guests: number;
  /** Files replaced by a link to an entry that was already there. */
  linked: number;
  /** Files that became store entries. */
  adopted: number;
  /** Bytes no longer held twice. */
  saved: number;
}

async function adopt(store: GuestStore, path: string, r: DedupResult): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isFile() || st.size === 0) return;
  const sha256 = await hashFile(path);
  const entry = store.entryPath(sha256, st.mode & 0o7777);
  const there = await lstat(entry).catch(() => undefined);
  if (there?.ino === st.ino && there.dev === st.dev) return; // already the entry
  if (await store.usable(entry, sha256, st.size)) {
    const tmp = `${path}.kiln-dedup-${randomBytes(4).toString("hex")}`;
    try {
      await link(entry, tmp);
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      if ((e as NodeJS.ErrnoException).code === "EMLINK") return;
      throw e;
    }
    r.linked++;
    r.saved += st.blocks * 512;
    return;
  }
  await mkdir(join(entry, ".."), { recursive: true, mode: 0o700 });
  await link(path, entry).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw e; // another process adopted the same content meanwhile: kept as it is
  });
  r.adopted++;
}

async function walkFiles(dir: string, each: (path: string) => Promise<void>): Promise<void> {
  const d = await opendir(dir).catch(() => undefined);
  if (!d) return;
  for await (const e of d) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walkFiles(p, each);
    else if (e.isFile()) await each(p);
  }
}

/** Convert every complete guest's files to store links; `onGuest` after each. */
export async function dedupGuests(
  cacheDir: string,
  onGuest?: (key: string, done: number, of: number, r: DedupResult) => void,
): Promise<DedupResult> {
  const store = new GuestStore(cacheDir);
  const r: DedupResult = { guests: 0, linked: 0, adopted: 0, saved: 0 };
  const guests = (await listGuests(cacheDir)).filter((g) => g.complete);
  for (const g of guests) {
    const lease = await leaseGuest(cacheDir, g.key);
    try {
      const marker = join(g.dir, GUEST_MARKER); // its own: its mtime is the guest's last use
      await walkFiles(g.dir, (p) => (p === marker ? Promise.resolve() : adopt(store, p, r)));
    } finally {
      await lease.release();
    }
    r.guests++;
    onGuest?.(g.key, r.guests, guests.length, r);
  }
  return r;
}
