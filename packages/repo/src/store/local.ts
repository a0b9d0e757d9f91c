// LocalDirStore: a repository in a directory. Writes go to a temporary file
// beside the target, are flushed, then renamed into place (replace) or
// hard-linked (create-only, which fails atomically when the name exists), so
// a reader or a crash never sees half a file. A key is a path of plain
// segments below the root (no `..`, `.` or empty segment), checked before any
// file-system call.

import { createReadStream } from "node:fs";
import { copyFile, mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { joinUnder, replaceAtomic } from "@kiln/core";
import {
  StoreError,
  storeKeySegments,
  type ObjectStore,
  type StoredObject,
  type WriteOptions,
  type WriteSource,
} from "./types.js";

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

export class LocalDirStore implements ObjectStore {
  readonly root: string;
  readonly location: string;
  readonly repositoryUrl: string;

  constructor(dir: string) {
    this.root = resolve(dir);
    this.location = this.root;
    this.repositoryUrl = this.root;
  }

  private path(key: string, opts: { prefix?: boolean } = {}): string {
    const segments = storeKeySegments(key, this.root, opts);
    return segments.length ? joinUnder(this.root, ...segments) : this.root;
  }

  private static etagOf(st: { ino: number; mtimeMs: number; size: number }): string {
    return `${st.ino}-${st.mtimeMs}-${st.size}`;
  }

  async head(key: string): Promise<StoredObject | undefined> {
    try {
      const st = await stat(this.path(key));
      if (!st.isFile()) return undefined;
      return { key, size: st.size, etag: LocalDirStore.etagOf(st), lastModified: st.mtime };
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return undefined;
      throw this.wrap(e, key);
    }
  }

  async get(key: string): Promise<{ body: Buffer; etag?: string } | undefined> {
    const p = this.path(key);
    try {
      const fh = await open(p, "r");
      try {
        const st = await fh.stat();
        const body = await fh.readFile();
        return { body, etag: LocalDirStore.etagOf(st) };
      } finally {
        await fh.close();
      }
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR" || errno(e) === "EISDIR") return undefined;
      throw this.wrap(e, key);
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    // Walk the deepest directory the prefix names, then filter by prefix.
    const dirPart = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : "";
    const start = this.path(dirPart, { prefix: true });
    const walk = async function* (self: LocalDirStore, d: string): AsyncGenerator<StoredObject> {
      let names: string[];
      try {
        names = await readdir(d);
      } catch (e) {
        if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return;
        throw self.wrap(e, relative(self.root, d));
      }
      for (const n of names.sort()) {
        const p = join(d, n);
        const key = relative(self.root, p).split(sep).join("/");
        const st = await stat(p).catch(() => undefined);
        if (!st) continue;
        if (st.isDirectory()) {
          if (prefix.startsWith(key + "/") || key.startsWith(prefix) || (key + "/").startsWith(prefix))
            yield* walk(self, p);
        } else if (st.isFile() && key.startsWith(prefix)) {
          yield { key, size: st.size, etag: LocalDirStore.etagOf(st), lastModified: st.mtime };
        }
      }
    };
    yield* walk(this, start);
  }

  async write(key: string, source: WriteSource, opts: WriteOptions): Promise<{ etag?: string }> {
    const final = this.path(key);
    await mkdir(dirname(final), { recursive: true });
    const cond = opts.condition;
    try {
      await replaceAtomic(
        final,
        async (tmp) => {
          if (Buffer.isBuffer(source)) {
            const fh = await open(tmp, "wx", 0o644);
            try {
              await fh.writeFile(source);
            } finally {
              await fh.close();
            }
          } else await copyFile(source.path, tmp);
          if (cond && "ifMatch" in cond) {
            // Not atomic on a plain file system: the publisher's re-read-and-merge loop is what converges.
            const cur = await this.head(key);
            if (!cur || cur.etag !== cond.ifMatch)
              throw new StoreError(`${this.location}/${key}: changed since it was read`, "PRECONDITION_FAILED", key);
          }
        },
        { fsync: true, noReplace: !!cond && "ifAbsent" in cond },
      );
      const st = await stat(final);
      return { etag: LocalDirStore.etagOf(st) };
    } catch (e) {
      if (cond && "ifAbsent" in cond && errno(e) === "EEXIST")
        throw new StoreError(`${this.location}/${key}: already exists`, "PRECONDITION_FAILED", key);
      throw this.wrap(e, key);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (e) {
      if (errno(e) !== "ENOENT") throw this.wrap(e, key);
    }
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}

  /** Read a file of the store as a stream (for verifying large objects without buffering). */
  stream(key: string): AsyncIterable<Uint8Array> {
    return createReadStream(this.path(key));
  }

  private wrap(e: unknown, key: string): unknown {
    if (e instanceof StoreError) return e;
    const code = errno(e);
    if (code === "EACCES" || code === "EPERM" || code === "EROFS")
      return new StoreError(`${join(this.root, key)}: ${(e as Error).message}`, "ACCESS", key, { cause: e });
    if (code) return new StoreError(`${join(this.root, key)}: ${(e as Error).message}`, "STORE", key, { cause: e });
    return e;
  }
}
