// distro.yaml's `sources:`: directories (or single files) of source archives
// seeded into the content-addressed source cache before the distribution
// builds, so fetch steps pinned by checksum find them without the upstream
// host. Every entry stays inside the distribution's directory (after
// following symlinks); only regular files are taken. A git bundle,
// NAME.bundle, is seeded as a bundle of the repository whose URL is the
// first line of NAME.bundle.url beside it (which is not seeded itself); a
// NAME.bundle without its NAME.bundle.url is an error.

import { lstat, readdir, readFile, realpath } from "node:fs/promises";
import { join, relative } from "node:path";
import { addGitBundle, addSource, sourceCache, type AddedSource } from "@kiln/builder";
import { isInside, KilnError } from "@kiln/core";
import type { Distro } from "./config.js";

export class DistroSourcesError extends KilnError {
  readonly code = "DISTRO_SOURCES";
}

/** The files one `sources:` entry names: itself, or the entries directly in the directory (dot files skipped). */
async function entryFiles(distro: Distro, entry: string): Promise<string[]> {
  const where = `${distro.file}: sources: ${relative(distro.root, entry) || "."}`;
  const real = await realpath(entry).catch((e: NodeJS.ErrnoException) => {
    throw new DistroSourcesError(`${where}: ${e.code === "ENOENT" ? "no such file or directory" : e.message}`);
  });
  if (!isInside(await realpath(distro.root), real))
    throw new DistroSourcesError(`${where}: resolves to ${real}, outside the distribution's directory ${distro.root}`);
  const st = await lstat(real);
  if (!st.isDirectory()) return [real];
  const files: string[] = [];
  for (const d of (await readdir(real, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (d.name.startsWith(".")) continue;
    if (!d.isFile())
      throw new DistroSourcesError(
        `${where}: ${d.name} is ${d.isSymbolicLink() ? "a symbolic link" : d.isDirectory() ? "a directory" : "not a regular file"}; sources are the regular files directly in the directory`,
      );
    files.push(join(real, d.name));
  }
  return files;
}

/** Seed every file of distro.yaml's `sources:` into `<cacheDir>/sources` (files cached already are only read); returns them. */
export async function seedDistroSources(distro: Distro, cacheDir: string): Promise<AddedSource[]> {
  const cache = sourceCache(cacheDir);
  const out: AddedSource[] = [];
  for (const entry of distro.sources) {
    const files = await entryFiles(distro, entry);
    for (const f of files) {
      if (f.endsWith(".bundle.url") && files.includes(f.slice(0, -4))) continue;
      try {
        if (f.endsWith(".bundle"))
          out.push(await addGitBundle(cacheDir, f, await bundleUrl(distro, f), undefined, true));
        else out.push(await addSource(cache, f, undefined, true));
      } catch (e) {
        if (e instanceof DistroSourcesError) throw e;
        throw new DistroSourcesError(`${distro.file}: sources: ${(e as Error).message}`, { cause: e });
      }
    }
  }
  return out;
}

/** The repository of the git bundle `file`: the first non-empty line of `file.url`. */
async function bundleUrl(distro: Distro, file: string): Promise<string> {
  const rel = relative(distro.root, file);
  const text = await readFile(`${file}.url`, "utf8").catch(() => undefined);
  const url = text
    ?.split("\n")
    .find((l) => l.trim() !== "")
    ?.trim();
  if (!url)
    throw new DistroSourcesError(
      `${distro.file}: sources: ${rel}: a git bundle needs its repository's URL in ${rel}.url (one line, e.g. https://host/project.git)`,
    );
  return url;
}
