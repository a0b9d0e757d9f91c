// The content-addressed source cache: `<cacheDir>/sources/<sha256>`, with
// `sources/sha512/<sha512>` files naming the sha256 of a source pinned by
// sha512 only. Files enter it by rename, verified, never half-written: from
// a download (download.ts) or seeded from a local file (addSource, for
// builds without the upstream host).

import { createHash } from "node:crypto";
import { constants as FS } from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { tempPathFor, writeFileAtomic } from "@kiln/core";
import { SourceError } from "./errors.js";

export interface SourceCache {
  /** `<cacheDir>/sources` */
  dir: string;
  /** `<cacheDir>/sources/sha512` */
  by512: string;
}

export function sourceCache(cacheDir: string): SourceCache {
  const dir = join(cacheDir, "sources");
  return { dir, by512: join(dir, "sha512") };
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fsp.lstat(p)).isFile();
  } catch {
    return false;
  }
}

/** The cached file for these checksums, if there is one. */
export async function lookupCached(
  cache: SourceCache,
  want256: string | undefined,
  want512: string | undefined,
): Promise<{ path: string; sha256: string } | undefined> {
  let known256 = want256;
  if (!known256 && want512) {
    try {
      const s = (await fsp.readFile(join(cache.by512, want512), "utf8")).trim();
      if (/^[0-9a-f]{64}$/.test(s)) known256 = s;
    } catch {
      /* not cached */
    }
  }
  if (known256 && (await isFile(join(cache.dir, known256))))
    return { path: join(cache.dir, known256), sha256: known256 };
  return undefined;
}

/**
 * A fresh temporary name in `dir` (@kiln/core's scheme, `.download.kiln-tmp-PID-RANDOM`), for a
 * download that is renamed into place once verified: its final name is its sha256, known only then.
 */
export function partialPath(dir: string): string {
  return tempPathFor(join(dir, "download"));
}

/** Move a verified download into the cache (and record its sha512 when it was pinned by one); returns its path. */
export async function storeVerified(
  cache: SourceCache,
  tmp: string,
  sha256: string,
  want512: string | undefined,
): Promise<string> {
  const final = join(cache.dir, sha256);
  await fsp.rename(tmp, final);
  if (want512) {
    await fsp.mkdir(cache.by512, { recursive: true });
    await writeFileAtomic(join(cache.by512, want512), sha256 + "\n");
  }
  return final;
}

/** The largest file `addSource` takes (8 GiB): far above any source archive, below a full disk by accident. */
export const MAX_SEED_BYTES = 8 * 1024 ** 3;

export interface AddedSource {
  /** The file as given. */
  file: string;
  sha256: string;
  sha512: string;
  bytes: number;
  /** Where it is now: `<cacheDir>/sources/<sha256>`. */
  path: string;
  /** The cache held this content already (it is replaced by the fresh copy, which heals a damaged entry). */
  existed: boolean;
}

/**
 * Seed the cache with a local file, as if a fetch step pinned by its sha256
 * or sha512 had downloaded it: a later fetch of any URI with that checksum
 * finds it without the network. Only a regular file is taken (a symlink,
 * directory, device or FIFO is refused, and the file is opened with
 * O_NOFOLLOW so it cannot be swapped for a link), at most `maxBytes`; it is
 * copied and hashed under a temporary name and renamed into place whole.
 * With `keepExisting` (seeding before every build round) a file whose
 * content is cached already, under both of its names, is only read.
 */
export async function addSource(
  cache: SourceCache,
  file: string,
  maxBytes = MAX_SEED_BYTES,
  keepExisting = false,
): Promise<AddedSource> {
  const st = await fsp.lstat(file).catch((e: NodeJS.ErrnoException) => {
    throw new SourceError("SEED", `${file}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  });
  if (st.isSymbolicLink()) throw new SourceError("SEED", `${file}: is a symbolic link; give the file itself`);
  if (!st.isFile()) throw new SourceError("SEED", `${file}: not a regular file`);
  const fh = await fsp.open(file, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  await fsp.mkdir(cache.dir, { recursive: true });
  const tmp = partialPath(cache.dir);
  try {
    const fst = await fh.stat();
    if (!fst.isFile() || fst.ino !== st.ino || fst.dev !== st.dev)
      throw new SourceError("SEED", `${file}: changed while being opened`);
    if (fst.size > maxBytes) throw tooLarge(file, maxBytes);
    if (keepExisting) {
      const known = await alreadyCached(cache, fh, file, maxBytes);
      if (known) return { file, ...known, existed: true };
    }
    const got = await copyHashed(fh, tmp, file, maxBytes);
    const path = join(cache.dir, got.sha256);
    const existed = await isFile(path);
    await storeVerified(cache, tmp, got.sha256, got.sha512);
    return { file, ...got, path, existed };
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  } finally {
    await fh.close();
  }
}

function tooLarge(file: string, maxBytes: number): SourceError {
  return new SourceError("SEED", `${file}: larger than ${maxBytes} bytes (the limit for a seeded source)`);
}

/** The cache entry for the content of `fh`, if it has one under both its sha256 and sha512 names. */
async function alreadyCached(
  cache: SourceCache,
  fh: fsp.FileHandle,
  file: string,
  maxBytes: number,
): Promise<Omit<AddedSource, "file" | "existed"> | undefined> {
  const got = await copyHashed(fh, undefined, file, maxBytes);
  const path = join(cache.dir, got.sha256);
  const alias = await fsp.readFile(join(cache.by512, got.sha512), "utf8").catch(() => "");
  return alias.trim() === got.sha256 && (await isFile(path)) ? { ...got, path } : undefined;
}

/** Copy `fh` into a new file `tmp` (or only read it), hashing it; the budget holds even if the file grows meanwhile. */
async function copyHashed(
  fh: fsp.FileHandle,
  tmp: string | undefined,
  file: string,
  maxBytes: number,
): Promise<{ sha256: string; sha512: string; bytes: number }> {
  const h256 = createHash("sha256");
  const h512 = createHash("sha512");
  const out = tmp === undefined ? undefined : await fsp.open(tmp, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o644);
  let bytes = 0;
  try {
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, bytes);
      if (bytesRead === 0) break;
      bytes += bytesRead;
      if (bytes > maxBytes) throw tooLarge(file, maxBytes);
      const chunk = buf.subarray(0, bytesRead);
      h256.update(chunk);
      h512.update(chunk);
      await out?.write(chunk);
    }
    await out?.sync();
  } finally {
    await out?.close();
  }
  return { sha256: h256.digest("hex"), sha512: h512.digest("hex"), bytes };
}

export interface CachedSource {
  sha256: string;
  bytes: number;
  path: string;
  /** The sha512 names that point at it. */
  sha512: string[];
}

/** Every source in the cache, by sha256, with the sha512 names recorded for it. */
export async function listSources(cache: SourceCache): Promise<CachedSource[]> {
  const names = await fsp.readdir(cache.dir).catch(() => [] as string[]);
  const aliases = new Map<string, string[]>();
  for (const n of (await fsp.readdir(cache.by512).catch(() => [] as string[])).sort()) {
    if (!/^[0-9a-f]{128}$/.test(n)) continue;
    const target = (await fsp.readFile(join(cache.by512, n), "utf8").catch(() => "")).trim();
    aliases.set(target, [...(aliases.get(target) ?? []), n]);
  }
  const out: CachedSource[] = [];
  for (const n of names.sort()) {
    if (!/^[0-9a-f]{64}$/.test(n)) continue;
    const st = await fsp.lstat(join(cache.dir, n)).catch(() => undefined);
    if (!st?.isFile()) continue;
    out.push({ sha256: n, bytes: st.size, path: join(cache.dir, n), sha512: aliases.get(n) ?? [] });
  }
  return out;
}

export interface SourceCheck extends CachedSource {
  /** Empty when the content matches its sha256 name and every sha512 name. */
  problems: string[];
}

/** Re-hash every cached source: its content must match its name, and its sha512 names. */
export async function verifySources(cache: SourceCache): Promise<SourceCheck[]> {
  const out: SourceCheck[] = [];
  for (const s of await listSources(cache)) {
    const h256 = createHash("sha256");
    const h512 = createHash("sha512");
    const fh = await fsp.open(s.path, FS.O_RDONLY | FS.O_NOFOLLOW);
    try {
      for await (const chunk of fh.createReadStream({ autoClose: false, start: 0 })) {
        h256.update(chunk as Buffer);
        h512.update(chunk as Buffer);
      }
    } finally {
      await fh.close();
    }
    const got256 = h256.digest("hex");
    const got512 = h512.digest("hex");
    const problems: string[] = [];
    if (got256 !== s.sha256) problems.push(`content has sha256 ${got256}`);
    for (const a of s.sha512) if (a !== got512) problems.push(`named by sha512 ${a}, content has sha512 ${got512}`);
    out.push({ ...s, problems });
  }
  return out;
}
