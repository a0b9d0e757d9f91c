// Repositories: fetch and verify signed indexes, and fetch packages checked
// against the index (C: identity, datahash, size) into a content-addressed
// disk cache, so a second build downloads nothing. Names, versions and
// architectures from an index become URLs and cache file names only after
// they are checked to be single plain path segments (joinUnder), even when
// the index is signed by a trusted key.

import { assertPathComponent, joinUnder, KilnError, tempPathFor, UnsafePathError, writeFileAtomic } from "@kiln/core";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { ApkError, dataOffset, openIndex, openPackage, type IndexFile, type Keyring } from "@kiln/apk";
import { DefaultFetcher, FetchError, joinUrl, readAll, type Fetcher, type Validator } from "./fetch.js";
import type { RepoPackage, RepositoryRef } from "./types.js";

export class RepositoryError extends KilnError {
  constructor(
    message: string,
    readonly code: "UNTRUSTED" | "BAD_INDEX" | "FETCH" | "MISMATCH",
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "RepositoryError";
  }
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.KILN_CACHE_DIR ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "kiln");
}

export interface RepoContext {
  keyring: Keyring;
  allowUntrusted?: boolean;
  fetcher?: Fetcher;
  cacheDir?: string;
  /** Parallel downloads. */
  concurrency?: number;
  onProgress?: (event: { kind: "index" | "package"; url: string; cached: boolean }) => void;
  /**
   * How a downloaded package is checked before it is cached: "full" (the
   * default) reads every entry, as kiln repo check wants; "hashes" checks
   * its size (S:), identity (C:) and datahash over the compressed bytes
   * without inflating them, for callers that read every entry next anyway
   * (an image build installs it, with every check of the reader).
   */
  packageCheck?: "full" | "hashes";
}

/** Parse `@tag URL` / `URL` lines as apk's /etc/apk/repositories and apko's contents.repositories. */
export function parseRepositoryRef(s: string): RepositoryRef {
  const m = /^@(\S+)\s+(\S+)$/.exec(s.trim());
  if (m) {
    try {
      assertPathComponent(m[1]!, "repository tag");
    } catch (e) {
      throw new RepositoryError(`invalid repository ${JSON.stringify(s)}: ${(e as Error).message}`, "BAD_INDEX", {
        cause: e,
      });
    }
    return { tag: m[1]!, url: m[2]! };
  }
  const url = s.trim();
  if (!url || /\s/.test(url))
    throw new RepositoryError(`invalid repository ${JSON.stringify(s)}: expected URL or "@tag URL"`, "BAD_INDEX");
  return { url };
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

export interface LoadedIndex {
  repo: RepositoryRef;
  arch: string;
  url: string;
  index: IndexFile;
  packages: RepoPackage[];
  /** How the signature check went ("OK", or the verdict when allowed untrusted). */
  trust: string;
}

/** The file name of a package in a repository (`NAME-VERSION.apk`), refusing a name, version or arch that is not one plain path segment. */
export function packageFileName(record: { name: string; version: string; arch?: string }): string {
  assertPathComponent(record.name, "package name");
  assertPathComponent(record.version, `version of ${record.name}`);
  if (record.arch) assertPathComponent(record.arch, `arch of ${record.name}-${record.version}`);
  return assertPathComponent(`${record.name}-${record.version}.apk`, "package file name");
}

function safeArch(arch: string, repo: RepositoryRef): string {
  try {
    return assertPathComponent(arch, "architecture");
  } catch (e) {
    throw new RepositoryError(`repository ${repo.url}: ${(e as Error).message}`, "BAD_INDEX", { cause: e });
  }
}

/** Fetch (or revalidate from cache) and verify `REPO/ARCH/APKINDEX.tar.gz`. */
export async function loadIndex(repo: RepositoryRef, arch: string, ctx: RepoContext): Promise<LoadedIndex> {
  const fetcher = ctx.fetcher ?? new DefaultFetcher();
  const url = joinUrl(repo.url, `${safeArch(arch, repo)}/APKINDEX.tar.gz`);
  const cacheDir = join(ctx.cacheDir ?? defaultCacheDir(), "indexes", sha256(url));
  const cachedFile = join(cacheDir, "APKINDEX.tar.gz");
  const metaFile = join(cacheDir, "meta.json");
  let validator: Validator | undefined;
  try {
    validator = JSON.parse(await readFile(metaFile, "utf8")) as Validator;
    await stat(cachedFile);
  } catch {
    validator = undefined;
  }
  let bytes: Buffer;
  let cached = false;
  try {
    const r = await fetcher.get(url, validator);
    if (r.status === "not-modified") {
      bytes = await readFile(cachedFile);
      cached = true;
    } else {
      bytes = await readAll(r.body);
      await mkdir(cacheDir, { recursive: true });
      await writeFileAtomic(cachedFile, bytes);
      await writeFileAtomic(metaFile, Buffer.from(JSON.stringify(r.validator)));
    }
  } catch (e) {
    if (e instanceof FetchError)
      throw new RepositoryError(`repository ${repo.url}: cannot fetch ${url}: ${e.message}`, "FETCH", { cause: e });
    throw e;
  }
  ctx.onProgress?.({ kind: "index", url, cached });
  // The signature is checked on the compressed bytes before the index is inflated.
  let head;
  try {
    head = await openIndex(bytes, { subject: url });
  } catch (e) {
    if (e instanceof ApkError)
      throw new RepositoryError(`repository ${repo.url}: ${e.message}`, "BAD_INDEX", { cause: e });
    throw e;
  }
  const check = head.check(ctx.keyring);
  if (check.verdict !== "OK" && !ctx.allowUntrusted) {
    throw new RepositoryError(
      `repository ${repo.url}: index ${url} is ${check.verdict}: ${check.reason} (add the repository's public key to the keyring, or pass --allow-untrusted)`,
      "UNTRUSTED",
    );
  }
  let index: IndexFile;
  try {
    index = await head.read();
  } catch (e) {
    if (e instanceof ApkError)
      throw new RepositoryError(`repository ${repo.url}: ${e.message}`, "BAD_INDEX", { cause: e });
    throw e;
  }
  // A trusted signature says who wrote the index, not that its names are safe to use as paths.
  const packages = index.records.map((record, i) => {
    let file: string;
    try {
      file = packageFileName(record);
    } catch (e) {
      throw new RepositoryError(
        `repository ${repo.url}: ${url}: record ${i + 1}: ${(e as Error).message}`,
        "BAD_INDEX",
        { cause: e },
      );
    }
    return { record, repo, url: joinUrl(repo.url, `${record.arch || arch}/${file}`) };
  });
  return { repo, arch, url, index, packages, trust: check.verdict };
}

/** All packages of several repositories, in repository order. */
export async function loadRepositories(
  repos: RepositoryRef[],
  arch: string,
  ctx: RepoContext,
): Promise<{ packages: RepoPackage[]; indexes: LoadedIndex[] }> {
  const indexes = await Promise.all(repos.map((r) => loadIndex(r, arch, ctx)));
  return { packages: indexes.flatMap((i) => i.packages), indexes };
}

/** Where a package is cached: content-addressed by the index's identity of it (C:), which the download is checked against before it enters the cache. */
function cachePath(dir: string, pkg: RepoPackage): string {
  const id = (pkg.record.checksum ?? "").replace(/^Q1/, "").replace(/\//g, "_").replace(/\+/g, "-");
  try {
    return joinUnder(dir, { value: `${id}-${packageFileName(pkg.record)}`, what: "cache file name" });
  } catch (e) {
    if (e instanceof UnsafePathError)
      throw new RepositoryError(`${pkg.url}: refusing to cache it: ${e.message}`, "BAD_INDEX", { cause: e });
    throw e;
  }
}

/** Check a package file against its index record: size (S:), C: identity and datahash. */
export async function checkPackageAgainstIndex(
  path: string,
  pkg: RepoPackage,
  how: "full" | "hashes" = "full",
): Promise<void> {
  const { record } = pkg;
  const size = (await stat(path)).size;
  if (record.fileSize !== undefined && size !== record.fileSize) {
    throw new RepositoryError(`${pkg.url}: ${size} bytes, but the index says ${record.fileSize} (S:)`, "MISMATCH");
  }
  let reader;
  try {
    reader = await openPackage(createReadStream(path), { subject: pkg.url });
  } catch (e) {
    if (e instanceof ApkError) throw new RepositoryError(`${pkg.url}: ${e.message}`, "MISMATCH", { cause: e });
    throw e;
  }
  try {
    if (record.checksum && reader.head.checksum !== record.checksum) {
      throw new RepositoryError(
        `${pkg.url}: control identity ${reader.head.checksum} differs from the index's C:${record.checksum}`,
        "MISMATCH",
      );
    }
    if (reader.head.info.name !== record.name || reader.head.info.version !== record.version) {
      throw new RepositoryError(
        `${pkg.url}: contains ${reader.head.info.name}-${reader.head.info.version}, the index says ${record.name}-${record.version}`,
        "MISMATCH",
      );
    }
    const dataHash = reader.head.info.dataHash;
    if (how === "hashes" && dataHash !== undefined) {
      // apk's datahash: SHA-256 of every byte after the control member.
      const start = dataOffset(reader.head);
      const h = createHash("sha256");
      for await (const c of createReadStream(path, { start, highWaterMark: 1024 * 1024 })) h.update(c as Buffer);
      if (h.digest("hex") !== dataHash.toLowerCase())
        throw new RepositoryError(`${pkg.url}: data does not match datahash in .PKGINFO`, "MISMATCH");
    } else await reader.drain();
  } catch (e) {
    if (e instanceof ApkError) throw new RepositoryError(`${pkg.url}: ${e.message}`, "MISMATCH", { cause: e });
    throw e;
  } finally {
    await reader.close();
  }
}

/** Pass a download through, stopping it once it is longer than the index's S: (a server cannot fill the disk). */
async function* capped(body: AsyncIterable<Uint8Array>, max: number, url: string): AsyncGenerator<Uint8Array> {
  let n = 0;
  for await (const c of body) {
    n += c.length;
    if (n > max)
      throw new RepositoryError(
        `${url}: over ${max} bytes, but the index says ${max} (S:); download stopped`,
        "MISMATCH",
      );
    yield c;
  }
}

/** Fetch one package into the cache (verified), returning its local path. */
export async function fetchPackage(pkg: RepoPackage, ctx: RepoContext): Promise<string> {
  const dir = join(ctx.cacheDir ?? defaultCacheDir(), "packages");
  const final = cachePath(dir, pkg);
  if (pkg.record.checksum) {
    const st = await stat(final).catch(() => undefined);
    if (st && (pkg.record.fileSize === undefined || st.size === pkg.record.fileSize)) {
      ctx.onProgress?.({ kind: "package", url: pkg.url, cached: true });
      return final;
    }
  }
  await mkdir(dir, { recursive: true });
  // Ends in .apk; tempPathFor falls back to a short name when the final one is already as long as a name can be.
  const tmp = tempPathFor(final, ".apk");
  const fetcher = ctx.fetcher ?? new DefaultFetcher();
  try {
    const r = await fetcher.get(pkg.url);
    if (r.status !== "ok") throw new RepositoryError(`${pkg.url}: unexpected not-modified`, "FETCH");
    await pipeline(
      pkg.record.fileSize === undefined ? r.body : capped(r.body, pkg.record.fileSize, pkg.url),
      createWriteStream(tmp),
    );
    await checkPackageAgainstIndex(tmp, pkg, ctx.packageCheck);
    if (!pkg.record.checksum) return tmp; // unverifiable: not cached under a content address
    await rename(tmp, final);
  } catch (e) {
    await rm(tmp, { force: true });
    if (e instanceof FetchError)
      throw new RepositoryError(`cannot fetch ${pkg.record.name}-${pkg.record.version}: ${e.message}`, "FETCH", {
        cause: e,
      });
    throw e;
  }
  ctx.onProgress?.({ kind: "package", url: pkg.url, cached: false });
  return final;
}

/** Fetch many packages with bounded parallelism; results in input order. */
export async function fetchPackages(pkgs: RepoPackage[], ctx: RepoContext): Promise<string[]> {
  const out: string[] = new Array(pkgs.length);
  let next = 0;
  const worker = async () => {
    while (next < pkgs.length) {
      const i = next++;
      out[i] = await fetchPackage(pkgs[i]!, ctx);
    }
  };
  await Promise.all(Array.from({ length: Math.min(ctx.concurrency ?? 4, pkgs.length) }, worker));
  return out;
}
