// The content-addressed source cache: `<cacheDir>/sources/<sha256>`, with
// `sources/sha512/<sha512>` files naming the sha256 of a source pinned by
// sha512 only. Files enter it by rename, verified, never half-written.

import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { tempPathFor, writeFileAtomic } from "@kiln/core";

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
