// Moving a private clone around: into the workspace (never following or
// writing through a symlink, every mtime set to one fixed time, modes
// reduced to 0644/0755) and in and out of the source cache, where a clone
// is kept as a tar named by the hash of what was asked for (repository,
// expected commit, cherry-picks...), so an unchanged recipe checks out the
// same tree again without the git server.

import { processAlive, writeFileAtomic, tempPathFor } from "@kiln/core";
import { spawn } from "node:child_process";
import { constants as FS } from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { sourceCache } from "../source/cache.js";
import { NativeStepError } from "./host.js";

/**
 * Copy the tree at `src` into the directory `dest` (which exists and is a
 * real directory): entries in the way are replaced, never followed;
 * symlinks are copied as written. Every entry's mtime becomes `mtime`
 * (seconds), so the checkout is the same from a fresh clone and from cache.
 */
export async function exportTree(src: string, dest: string, mtime: number): Promise<number> {
  let count = 0;
  const walk = async (from: string, to: string): Promise<void> => {
    for (const e of (await fsp.readdir(from, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const s = join(from, e.name);
      const d = join(to, e.name);
      const there = await fsp.lstat(d).catch(() => undefined);
      count++;
      if (e.isDirectory()) {
        if (there && !there.isDirectory()) await fsp.rm(d, { force: true });
        if (!there?.isDirectory()) await fsp.mkdir(d, { mode: 0o755 });
        await walk(s, d);
        await fsp.chmod(d, 0o755);
        await fsp.utimes(d, mtime, mtime);
      } else if (e.isSymbolicLink()) {
        if (there) await fsp.rm(d, { recursive: true, force: true });
        await fsp.symlink(await fsp.readlink(s), d);
        await fsp.lutimes(d, mtime, mtime);
      } else if (e.isFile()) {
        if (there) await fsp.rm(d, { recursive: true, force: true });
        const mode = (await fsp.stat(s)).mode & 0o111 ? 0o755 : 0o644;
        // COPYFILE_EXCL: the name was just cleared; anything planted since is not written through.
        await fsp.copyFile(s, d, FS.COPYFILE_EXCL);
        const fh = await fsp.open(d, FS.O_RDONLY | FS.O_NOFOLLOW);
        try {
          await fh.chmod(mode);
          await fh.utimes(mtime, mtime);
        } finally {
          await fh.close();
        }
      }
    }
  };
  await walk(src, dest);
  return count;
}

/**
 * A private directory for one git step, `<cacheDir>/git-work-PID-XXXXXX`, outside the workspace.
 * Those left by a kiln that was killed (its PID gone) are removed first.
 */
export async function gitWorkDir(cacheDir: string): Promise<string> {
  await fsp.mkdir(cacheDir, { recursive: true });
  for (const name of await fsp.readdir(cacheDir)) {
    const pid = Number(/^git-work-(\d+)-/.exec(name)?.[1] ?? 0);
    if (pid > 0 && pid !== process.pid && !processAlive(pid))
      await fsp.rm(join(cacheDir, name), { recursive: true, force: true });
  }
  return fsp.mkdtemp(join(cacheDir, `git-work-${process.pid}-`));
}

function runTar(args: string[], what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn("tar", args, { stdio: ["ignore", "ignore", "pipe"], env: { PATH: process.env.PATH, LC_ALL: "C" } });
    let err = "";
    p.stderr.on("data", (d: Buffer) => (err += d.toString()).slice(-2000));
    p.on("error", (e) => reject(new NativeStepError(`${what}: cannot run tar: ${e.message}`)));
    p.on("close", (code) =>
      code === 0 ? resolve() : reject(new NativeStepError(`${what}: tar failed: ${err.trim().split("\n").pop()}`)),
    );
  });
}

/** What the cache records beside a clone. */
export interface CachedClone {
  repository: string;
  /** The commit checked out from the repository. */
  base: string;
  /** HEAD after the cherry-picks. */
  head: string;
}

function cachePaths(cacheDir: string, key: string): { dir: string; tar: string; meta: string } {
  const dir = join(sourceCache(cacheDir).dir, "git");
  return { dir, tar: join(dir, `${key}.tar`), meta: join(dir, `${key}.json`) };
}

/** Unpack the cached clone for `key` into `clone` (which must not exist); undefined when there is none. */
export async function restoreClone(cacheDir: string, key: string, clone: string): Promise<CachedClone | undefined> {
  const p = cachePaths(cacheDir, key);
  let meta: CachedClone;
  try {
    meta = JSON.parse(await fsp.readFile(p.meta, "utf8")) as CachedClone;
    if (!(await fsp.lstat(p.tar)).isFile()) return undefined;
  } catch {
    return undefined;
  }
  if (![meta.base, meta.head].every((c) => typeof c === "string" && /^[0-9a-f]{40}$/.test(c))) return undefined;
  await fsp.mkdir(clone);
  await runTar(["-C", clone, "-xf", p.tar, "--no-same-owner"], `the cached clone ${p.tar}`);
  return meta;
}

/** Keep the clone at `clone` in the cache under `key` (atomically: the tar is renamed into place last). */
export async function storeClone(cacheDir: string, key: string, clone: string, meta: CachedClone): Promise<void> {
  const p = cachePaths(cacheDir, key);
  await fsp.mkdir(p.dir, { recursive: true });
  const tmp = tempPathFor(p.tar);
  try {
    await runTar(
      ["-C", clone, "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-cf", tmp, "."],
      `caching the clone as ${p.tar}`,
    );
    await writeFileAtomic(p.meta, JSON.stringify(meta) + "\n");
    await fsp.rename(tmp, p.tar);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}
