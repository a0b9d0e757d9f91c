// The content store of an image root: file contents by SHA-1. Small contents
// (most files of a distribution: configs, scripts, headers, .py files) stay in
// memory up to a fixed total, so 100,000 tiny files cost no file each; the
// rest, and everything once that total is reached, go to files in the spool
// directory, written under a temporary name and renamed into place once
// their checksum is known. Every store is bounded while it is read: the
// caller's allowances are checked before a byte is kept.

import { tempPathFor } from "@kiln/core";
import { createHash, hash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, link, mkdir, open, readFile, rename, rm, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";

/** Bytes a store may still take, and the error once it takes more. */
export interface Allowance {
  left: number;
  refuse(): Error;
}

export interface StoredBlob {
  sha1: string;
  size: number;
  /** The content, when the spool that made this holds it in memory (what inMemory() returns without a lookup). */
  held?: Buffer;
}

export interface BlobSpoolOptions {
  /** Contents up to this size are candidates for memory (default 64 KiB). */
  smallFile?: number;
  /** Total bytes kept in memory (default 64 MiB); beyond it everything goes to disk. */
  memoryBytes?: number;
}

const SHA1_RE = /^[0-9a-f]{40}$/;

async function writeAll(fh: FileHandle, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += (await fh.write(b, off, b.length - off)).bytesWritten;
}

export class BlobSpool {
  private readonly memory = new Map<string, Buffer>();
  /** Contents known to be in host files kiln keeps (a build guest's content store), by SHA-1. */
  private readonly external = new Map<string, string>();
  private memoryUsed = 0;
  private readonly smallFile: number;
  private readonly memoryBytes: number;
  private dirMade = false;
  /** Spool files already hard-linked out by giveTo (their inode's mode is the receiver's now). */
  private readonly given = new Set<string>();

  constructor(
    readonly dir: string,
    opts: BlobSpoolOptions = {},
  ) {
    this.smallFile = opts.smallFile ?? 64 * 1024;
    this.memoryBytes = opts.memoryBytes ?? 64 * 1024 * 1024;
  }

  /** Where a content kept on disk is (whether or not it is there). */
  path(sha1: string): string {
    if (!SHA1_RE.test(sha1)) throw new RangeError(`spool: ${JSON.stringify(sha1)} is not a SHA-1`);
    return join(this.dir, sha1);
  }

  /** Bytes held in memory. */
  get memoryInUse(): number {
    return this.memoryUsed;
  }

  private async ensureDir(): Promise<void> {
    if (!this.dirMade) await mkdir(this.dir, { recursive: true });
    this.dirMade = true;
  }

  /**
   * Store a content; its SHA-1 and size. Throws the first exceeded
   * allowance's error (nothing is left behind), or `mismatch()` when the
   * content's SHA-1 is not `expectSha1`. Allowances are not charged here.
   * With `sourceChecks`, the source itself fails when its content does not
   * hash to `expectSha1` (as @kiln/apk's package reader does at the end of an
   * entry's content), so it is not hashed a second time here.
   */
  async store(
    content: AsyncIterable<Uint8Array> | Uint8Array,
    limits: Allowance[],
    expectSha1: string | undefined,
    mismatch: () => Error,
    sourceChecks = false,
  ): Promise<StoredBlob> {
    const known = sourceChecks && expectSha1 !== undefined && SHA1_RE.test(expectSha1) ? expectSha1 : undefined;
    // Small contents are hashed in one call at the end; a stream's hash starts when it goes to disk.
    let h: Hash | undefined;
    let size = 0;
    let parts: Buffer[] = [];
    let fh: FileHandle | undefined;
    let tmp: string | undefined;
    try {
      for await (const c of content instanceof Uint8Array ? [content] : content) {
        size += c.length;
        const over = limits.find((a) => size > a.left);
        if (over) throw over.refuse();
        if (!fh && size <= this.smallFile) {
          // Copied: the chunk may be a view of a much larger buffer the source reuses or keeps.
          parts.push(Buffer.from(c));
          continue;
        }
        if (!fh) {
          await this.ensureDir();
          tmp = tempPathFor(join(this.dir, "blob"));
          fh = await open(tmp, "wx", 0o600);
          if (!known) h = createHash("sha1");
          for (const p of parts) {
            h?.update(p);
            await writeAll(fh, p);
          }
          parts = [];
        }
        h?.update(c);
        await writeAll(fh, c);
      }
      const bytes = fh ? undefined : parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
      const sha1 = known ?? (bytes ? hash("sha1", bytes, "hex") : h!.digest("hex"));
      if (expectSha1 && expectSha1 !== sha1) throw mismatch();
      if (fh) {
        await fh.close();
        fh = undefined;
        await rename(tmp!, this.path(sha1));
        tmp = undefined;
      } else if (!this.memory.has(sha1)) {
        if (this.memoryUsed + size <= this.memoryBytes) {
          this.memory.set(sha1, bytes!);
          this.memoryUsed += size;
        } else {
          await this.ensureDir();
          tmp = tempPathFor(join(this.dir, "blob"));
          await writeFile(tmp, bytes!, { mode: 0o600 });
          await rename(tmp, this.path(sha1));
          tmp = undefined;
        }
      }
      return { sha1, size };
    } finally {
      if (fh) await fh.close().catch(() => undefined);
      if (tmp) await rm(tmp, { force: true });
    }
  }

  /**
   * Keep a small content at hand in memory without waiting: its blob, or
   * undefined when it is over the small-file size or memory is full (then
   * store() it). `sha1`, when given, is its checksum as the caller checked it.
   * Allowances are the caller's.
   */
  storeSync(bytes: Uint8Array, sha1?: string): StoredBlob | undefined {
    if (bytes.length > this.smallFile) return undefined;
    const id = sha1 !== undefined && SHA1_RE.test(sha1) ? sha1 : hash("sha1", bytes, "hex");
    let held = this.memory.get(id);
    if (!held) {
      if (this.memoryUsed + bytes.length > this.memoryBytes) return undefined;
      // Copied: `bytes` is a view of a much larger buffer.
      held = Buffer.from(bytes);
      this.memory.set(id, held);
      this.memoryUsed += bytes.length;
    }
    return { sha1: id, size: bytes.length, held };
  }

  /** Record that `blob` is the content of the host file `path` (kept by the caller, never written here). */
  addExternal(blob: StoredBlob, path: string): void {
    if (!SHA1_RE.test(blob.sha1)) throw new RangeError(`spool: ${JSON.stringify(blob.sha1)} is not a SHA-1`);
    if (!this.memory.has(blob.sha1)) this.external.set(blob.sha1, path);
  }

  /** Where a content is on disk: the spool's file, or the external file it was recorded in. */
  private fileOf(sha1: string): string {
    return this.external.get(sha1) ?? this.path(sha1);
  }

  /** The whole content. */
  async read(blob: StoredBlob): Promise<Buffer> {
    return this.inMemory(blob) ?? readFile(this.fileOf(blob.sha1));
  }

  /** The content when it is held in memory, else undefined. */
  inMemory(blob: StoredBlob): Buffer | undefined {
    return blob.held ?? this.memory.get(blob.sha1);
  }

  /** The content as a stream of chunks (one chunk when it is in memory). */
  async *stream(blob: StoredBlob): AsyncGenerator<Uint8Array> {
    const m = this.inMemory(blob);
    if (m) {
      yield m;
      return;
    }
    for await (const c of createReadStream(this.fileOf(blob.sha1), { highWaterMark: 1024 * 1024 })) yield c as Buffer;
  }

  /**
   * Make `dest` (a new file on the spool's file system, which the caller
   * chmods and never writes) hold the content: the spool's own file is
   * hard-linked there the first time, so a build guest's content store takes
   * it without writing it again; otherwise, or after that, a copy.
   */
  async giveTo(blob: StoredBlob, dest: string): Promise<void> {
    if (!this.inMemory(blob) && !this.external.has(blob.sha1) && !this.given.has(blob.sha1)) {
      this.given.add(blob.sha1);
      try {
        await link(this.path(blob.sha1), dest);
        return;
      } catch {
        // Another file system, or the link limit: copied below.
      }
    }
    await this.copyTo(blob, dest);
  }

  /** Write the content to a new file `dest`. */
  async copyTo(blob: StoredBlob, dest: string): Promise<void> {
    const m = this.inMemory(blob);
    if (m) await writeFile(dest, m);
    else await copyFile(this.fileOf(blob.sha1), dest);
  }
}
