// Package manifests: what installing a package into a guest put there
// (image root's PackageManifest: its entries, install scripts and the fields
// installing reads), kept in CACHE/manifests by the package's identity (C:)
// with each regular file's SHA-256, the name of its content in the guest
// store. A later guest that holds the package installs it from the manifest
// and links its files from the store: the package is not fetched,
// decompressed, hashed or spooled again. When a file it names is no longer
// in the store the guest is made again from the packages (guest.ts); a
// manifest that is unreadable or inconsistent is ignored, since the cache is
// only a cache.

import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { ManifestEntry, PackageManifest } from "@kiln/image";
import type { RepoPackage } from "@kiln/repo";
import type { GuestStore, StoreReader } from "./guest-store.js";

export const MANIFEST_DIR = "manifests";

/** CACHE/manifests/HEX.json for a `Q1…` (base64 SHA-1) identity; undefined for anything else. */
export function manifestPath(cacheDir: string, checksum: string | undefined): string | undefined {
  const m = /^Q1([A-Za-z0-9+/]{27}=)$/.exec(checksum ?? "");
  if (!m) return undefined;
  const hex = Buffer.from(m[1]!, "base64").toString("hex");
  return hex.length === 40 ? join(cacheDir, MANIFEST_DIR, `${hex}.json`) : undefined;
}

/** Store entries a manifest's files are linked from (size 0 files need none). */
function storeFiles(m: PackageManifest): ManifestEntry[] {
  return m.entries.filter((e) => e.type === "file" && e.size > 0);
}

/** The manifest of `pkg`, when one is kept and names a store entry for every file. */
export async function usableManifest(cacheDir: string, pkg: RepoPackage): Promise<PackageManifest | undefined> {
  const path = manifestPath(cacheDir, pkg.record.checksum);
  if (!path) return undefined;
  let m: PackageManifest;
  try {
    m = JSON.parse(await readFile(path, "utf8")) as PackageManifest;
  } catch {
    return undefined;
  }
  if (!m || m.version !== 1 || m.checksum !== pkg.record.checksum || !Array.isArray(m.entries)) return undefined;
  if (!Array.isArray(m.scripts) || !Array.isArray(m.replaces) || !Array.isArray(m.triggers)) return undefined;
  // Each store entry is looked at once it is linked (GuestStore.place): one gone meanwhile makes the guest from packages.
  for (const e of storeFiles(m)) if (typeof e.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(e.sha256)) return undefined;
  return m;
}

/**
 * Keep `m` (from installing `pkg`) with the SHA-256 of each of its files, as
 * `store` placed them; a file this guest does not hold (another package's
 * replaced it) is put in the store from `reader` (the root's spool).
 */
export async function saveManifest(
  cacheDir: string,
  pkg: RepoPackage,
  m: PackageManifest,
  store: GuestStore,
  reader: StoreReader,
): Promise<boolean> {
  const path = manifestPath(cacheDir, pkg.record.checksum);
  if (!path) return false;
  for (const e of storeFiles(m))
    e.sha256 = store.sha256For(e.sha1!) ?? (await store.keep(reader, { sha1: e.sha1!, size: e.size }, e.mode & 0o7777));
  await mkdir(join(cacheDir, MANIFEST_DIR), { recursive: true });
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, JSON.stringify(m));
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
  return true;
}
