// Safe extraction of (possibly compressed) tar archives: nothing is written
// outside the destination, never through a symlink.

import { constants as FS, createReadStream } from "node:fs";
import * as fsp from "node:fs/promises";
import { join, posix } from "node:path";
import type { Readable } from "node:stream";
import {
  type ArchiveFormat,
  type Compression,
  decompress,
  detectArchiveFormat,
  FORMAT_COMPRESSION,
} from "./decompress.js";
import { SourceError } from "./errors.js";
import { readTar, type TarEntry } from "./tar-read.js";

export interface ExtractSummary {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Entries not written (device nodes, fifos, entries removed by stripComponents), with the reason. */
  skipped: string[];
  /** Relative paths written, in archive order. */
  paths: string[];
}

export interface ExtractHooks {
  /** Rewrite a normalised relative path, or return null to skip the entry. */
  mapPath?: (path: string) => string | null;
  /** Rewrite a symlink target; gets the final and the original (pre-mapPath) link path. */
  mapSymlink?: (target: string, path: string, originalPath: string) => string;
  /** What to do when an entry names a path an earlier entry of this archive wrote: replace it (tar's default) or fail. */
  onConflict?: "replace" | "error";
}

export interface ExtractOptions extends ExtractHooks {
  stripComponents?: number;
  /** Archive format; detected from the magic bytes (then the name) when absent. */
  format?: ArchiveFormat;
}

/** Normalise an entry name to `a/b/c`; "" for the root; throws UNSAFE_PATH for absolute names and `..`. */
export function normalizeArchivePath(raw: string, subject: string): string {
  if (raw.includes("\0"))
    throw new SourceError("UNSAFE_PATH", `${subject}: entry name ${JSON.stringify(raw)} contains a NUL byte`);
  if (raw.startsWith("/"))
    throw new SourceError("UNSAFE_PATH", `${subject}: refusing absolute entry name ${JSON.stringify(raw)}`);
  const segs = raw.split("/").filter((s) => s !== "" && s !== ".");
  if (segs.includes(".."))
    throw new SourceError("UNSAFE_PATH", `${subject}: refusing entry name ${JSON.stringify(raw)} containing ".."`);
  return segs.join("/");
}

class Extractor {
  private readonly dirs = new Set<string>([""]);
  private readonly written = new Set<string>();
  private readonly dirMeta = new Map<string, { mode: number; mtime: number }>();
  readonly summary: ExtractSummary = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, skipped: [], paths: [] };

  constructor(
    private readonly root: string,
    private readonly subject: string,
    private readonly opts: ExtractOptions,
  ) {}

  private unsafe(msg: string): SourceError {
    return new SourceError("UNSAFE_PATH", `${this.subject}: ${msg}`);
  }

  /** Make sure `rel` is a real directory under the root, creating it (and its parents) if missing; never through a symlink. */
  private async ensureDir(rel: string, forEntry: string): Promise<void> {
    if (this.dirs.has(rel)) return;
    const parent = posix.dirname(rel);
    await this.ensureDir(parent === "." ? "" : parent, forEntry);
    const abs = join(this.root, rel);
    let st;
    try {
      st = await fsp.lstat(abs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      try {
        await fsp.mkdir(abs, { mode: 0o755 });
      } catch (e2) {
        if ((e2 as NodeJS.ErrnoException).code !== "EEXIST") throw e2;
        st = await fsp.lstat(abs);
        if (!st.isDirectory()) throw this.unsafe(`${JSON.stringify(forEntry)}: ${rel} appeared as a non-directory`);
      }
      this.dirs.add(rel);
      return;
    }
    if (st.isSymbolicLink())
      throw this.unsafe(`refusing ${JSON.stringify(forEntry)}: it would be written through the symlink ${rel}`);
    if (!st.isDirectory()) throw this.unsafe(`refusing ${JSON.stringify(forEntry)}: ${rel} is not a directory`);
    this.dirs.add(rel);
  }

  /** Check that every parent of `rel` is a real directory (without creating anything). */
  private async checkParents(rel: string, forEntry: string): Promise<void> {
    const parts = rel.split("/");
    let cur = "";
    for (let i = 0; i < parts.length - 1; i++) {
      cur = cur ? `${cur}/${parts[i]}` : parts[i]!;
      if (this.dirs.has(cur)) continue;
      const st = await fsp.lstat(join(this.root, cur)).catch(() => undefined);
      if (!st) throw this.unsafe(`hardlink ${JSON.stringify(forEntry)}: target directory ${cur} does not exist`);
      if (st.isSymbolicLink())
        throw this.unsafe(`refusing hardlink ${JSON.stringify(forEntry)}: its target goes through the symlink ${cur}`);
      if (!st.isDirectory()) throw this.unsafe(`hardlink ${JSON.stringify(forEntry)}: ${cur} is not a directory`);
      this.dirs.add(cur);
    }
  }

  /** Clear the way for a non-directory at `rel`. */
  private async prepareLeaf(rel: string, forEntry: string): Promise<string> {
    const parent = posix.dirname(rel);
    await this.ensureDir(parent === "." ? "" : parent, forEntry);
    const abs = join(this.root, rel);
    if (this.written.has(rel) && this.opts.onConflict === "error") {
      throw new SourceError(
        "BAD_ARCHIVE",
        `${this.subject}: two entries write ${rel}${forEntry !== rel ? ` (the second is ${JSON.stringify(forEntry)})` : ""}`,
      );
    }
    const st = await fsp.lstat(abs).catch(() => undefined);
    if (st) {
      if (st.isDirectory())
        throw new SourceError(
          "BAD_ARCHIVE",
          `${this.subject}: ${JSON.stringify(forEntry)} would replace the directory ${rel}`,
        );
      await fsp.unlink(abs);
    }
    return abs;
  }

  private mapped(raw: string, what: string): { rel: string; orig: string } | null {
    const norm = normalizeArchivePath(raw, this.subject);
    let segs = norm === "" ? [] : norm.split("/");
    const strip = this.opts.stripComponents ?? 0;
    if (strip > 0) {
      if (segs.length <= strip) return null;
      segs = segs.slice(strip);
    }
    const orig = segs.join("/");
    if (orig === "") return { rel: "", orig };
    const rel = this.opts.mapPath ? this.opts.mapPath(orig) : orig;
    if (rel === null) return null;
    if (rel !== orig && normalizeArchivePath(rel, this.subject) !== rel)
      throw this.unsafe(`${what} mapped to a non-normal path ${JSON.stringify(rel)}`);
    return { rel, orig };
  }

  async entry(e: TarEntry, data: () => AsyncGenerator<Buffer>): Promise<void> {
    const m = this.mapped(e.path, JSON.stringify(e.path));
    if (m === null) {
      this.summary.skipped.push(`${e.path}: stripped`);
      return;
    }
    const { rel, orig } = m;
    if (rel === "") {
      if (e.type !== "dir") throw this.unsafe(`refusing ${JSON.stringify(e.path)}: a ${e.type} at the extraction root`);
      return; // the root's own entry: its mode stays the caller's
    }
    switch (e.type) {
      case "dir":
        return this.dir(e, rel);
      case "file":
        await this.file(e, rel, data);
        this.summary.files++;
        break;
      case "symlink":
        await this.symlink(e, rel, orig);
        this.summary.symlinks++;
        break;
      case "hardlink":
        await this.hardlink(e, rel);
        this.summary.hardlinks++;
        break;
      default:
        this.summary.skipped.push(`${e.path}: ${e.type} device/fifo not created`);
        return;
    }
    this.written.add(rel);
    this.summary.paths.push(rel);
  }

  private async dir(e: TarEntry, rel: string): Promise<void> {
    const abs = join(this.root, rel);
    const st = await fsp.lstat(abs).catch(() => undefined);
    if (st && st.isSymbolicLink())
      throw this.unsafe(`refusing directory ${JSON.stringify(e.path)}: ${rel} is a symlink`);
    if (st && !st.isDirectory()) await this.prepareLeaf(rel, e.path); // a file there: replace it
    await this.ensureDir(rel, e.path);
    if (!this.dirMeta.has(rel)) {
      this.summary.dirs++;
      this.summary.paths.push(rel);
    }
    this.dirMeta.set(rel, { mode: e.mode, mtime: e.mtime });
  }

  private async file(e: TarEntry, rel: string, data: () => AsyncGenerator<Buffer>): Promise<void> {
    const abs = await this.prepareLeaf(rel, e.path);
    const fh = await fsp.open(abs, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of data()) await fh.write(chunk);
      await fh.chmod(e.mode);
      await fh.utimes(e.mtime, e.mtime);
    } finally {
      await fh.close();
    }
  }

  private async symlink(e: TarEntry, rel: string, orig: string): Promise<void> {
    if (e.linkname === "")
      throw new SourceError("BAD_ARCHIVE", `${this.subject}: symlink ${JSON.stringify(e.path)} has an empty target`);
    if (e.linkname.includes("\0")) throw this.unsafe(`symlink ${JSON.stringify(e.path)} target contains a NUL byte`);
    const target = this.opts.mapSymlink ? this.opts.mapSymlink(e.linkname, rel, orig) : e.linkname;
    const abs = await this.prepareLeaf(rel, e.path);
    await fsp.symlink(target, abs);
    await fsp.lutimes(abs, e.mtime, e.mtime).catch(() => undefined);
  }

  private async hardlink(e: TarEntry, rel: string): Promise<void> {
    const t = this.mapped(e.linkname, `hardlink target ${JSON.stringify(e.linkname)}`);
    if (t === null || t.rel === "")
      throw this.unsafe(
        `hardlink ${JSON.stringify(e.path)} -> ${JSON.stringify(e.linkname)}: target is outside the extracted tree`,
      );
    await this.checkParents(t.rel, e.path);
    const tabs = join(this.root, t.rel);
    const tst = await fsp.lstat(tabs).catch(() => undefined);
    if (!tst || !tst.isFile())
      throw this.unsafe(
        `hardlink ${JSON.stringify(e.path)} -> ${JSON.stringify(e.linkname)}: target is not a regular file extracted before it`,
      );
    const abs = await this.prepareLeaf(rel, e.path);
    await fsp.link(tabs, abs);
  }

  /** Apply directory modes and times, deepest first, once everything is written. */
  async finish(): Promise<void> {
    const ds = [...this.dirMeta.entries()].sort((a, b) => b[0].split("/").length - a[0].split("/").length);
    for (const [rel, m] of ds) {
      const abs = join(this.root, rel);
      await fsp.chmod(abs, m.mode);
      await fsp.utimes(abs, m.mtime, m.mtime);
    }
  }
}

/** Extract a tar stream into destDir (created if needed) with the safety rules of extractArchive. */
export async function extractTarStream(
  src: AsyncIterable<Buffer>,
  destDir: string,
  subject: string,
  opts: ExtractOptions = {},
): Promise<ExtractSummary> {
  await fsp.mkdir(destDir, { recursive: true });
  const root = await fsp.realpath(destDir);
  const x = new Extractor(root, subject, opts);
  for await (const { entry, data } of readTar(src, subject)) await x.entry(entry, data);
  await x.finish();
  return x.summary;
}

/**
 * Extract a tar archive (plain, gzip, xz, bzip2, zstd or lzma) into destDir.
 * Nothing is written outside destDir: absolute names and `..` are refused,
 * no entry is written through a symlink (parents are checked with lstat and
 * files are opened with O_NOFOLLOW|O_EXCL), and hardlinks must point at a
 * regular file extracted earlier. Modes (including setuid), mtimes, symlinks
 * and hardlinks are preserved; ownership is not (packages normalise it).
 * Device nodes and fifos are skipped and listed in `skipped`.
 */
export async function extractArchive(
  file: string,
  destDir: string,
  opts: ExtractOptions = {},
): Promise<ExtractSummary> {
  const format = opts.format ?? (await detectArchiveFormat(file));
  return extractCompressedTar(createReadStream(file), FORMAT_COMPRESSION[format], destDir, file, opts);
}

/** Extract a (possibly compressed) tar from a byte stream; shared by extractArchive and the .deb reader. */
export async function extractCompressedTar(
  input: Readable,
  compression: Compression,
  destDir: string,
  subject: string,
  opts: ExtractOptions = {},
): Promise<ExtractSummary> {
  const d = decompress(input, compression, subject);
  let summary: ExtractSummary;
  try {
    summary = await extractTarStream(d.stream, destDir, subject, opts);
  } catch (e) {
    // A truncated or garbled stream is usually the decompressor's failure: report that.
    if (e instanceof SourceError && e.code === "BAD_ARCHIVE") {
      const toolErr = await d.failure();
      d.abort();
      if (toolErr instanceof SourceError)
        throw new SourceError(toolErr.code, `${toolErr.message} (${e.message})`, { cause: e });
      throw e;
    }
    d.abort();
    throw e;
  }
  // Read to the end so the decompressor verifies its trailing checksum.
  for await (const _ of d.stream) {
    /* trailing data after the end-of-archive blocks */
  }
  await d.done;
  return summary;
}

/** Read the regular files of a (possibly compressed) tar into memory (for small archives such as a .deb's control member). */
export async function readTarFiles(
  input: Readable,
  compression: Compression,
  subject: string,
  limit = 64 << 20,
): Promise<Map<string, Buffer>> {
  const d = decompress(input, compression, subject);
  const out = new Map<string, Buffer>();
  let total = 0;
  try {
    for await (const { entry, data } of readTar(d.stream, subject)) {
      if (entry.type !== "file") continue;
      total += entry.size;
      if (total > limit) throw new SourceError("BAD_ARCHIVE", `${subject}: more than ${limit} bytes of files`);
      const parts: Buffer[] = [];
      for await (const c of data()) parts.push(Buffer.from(c));
      out.set(normalizeArchivePath(entry.path, subject), Buffer.concat(parts));
    }
  } catch (e) {
    d.abort();
    throw e;
  }
  for await (const _ of d.stream) {
    /* drain */
  }
  await d.done;
  return out;
}
