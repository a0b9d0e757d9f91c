// Writing an image root's tree to a real directory (a build guest). Paths in
// the tree are canonical (no symlink in any parent), so creating them in
// sorted order in a fresh directory can never follow a link out of it; each
// is joined segment by segment (joinUnder), so a node whose path holds `..`
// or an empty segment is refused rather than written beside the directory.

import { chmodSync, mkdirSync, symlinkSync } from "node:fs";
import { chmod, link, mkdir, rm, writeFile, lstat } from "node:fs/promises";
import { joinUnder, UnsafePathError } from "@kiln/core";
import { InstallError, type ImageRoot } from "./root.js";
import type { StoredBlob } from "./spool.js";

export interface MaterializeOptions {
  devices?: boolean;
  /**
   * Put a regular file's content at `dest` with `mode` (instead of a copy and
   * a chmod): a build guest hard-links it from a content store. The file is
   * not chmod-ed afterwards, so a shared inode keeps the mode it was made with.
   */
  placeFile?: (blob: StoredBlob, dest: string, mode: number) => Promise<void>;
  /**
   * placeFile's fast path, tried first: place the file without waiting
   * (e.g. a hard link to a store entry already checked) and return true, or
   * return false to have placeFile do it.
   */
  placeFileSync?: (blob: StoredBlob, dest: string, mode: number) => boolean;
}

function hostPath(dir: string, treePath: string): string {
  try {
    return joinUnder(dir, ...treePath.split("/").map((value) => ({ value, what: "path segment" })));
  } catch (e) {
    if (e instanceof UnsafePathError)
      throw new InstallError(
        `refusing to write ${JSON.stringify(treePath)} under ${dir}: ${e.message}`,
        "INVALID_PATH",
      );
    throw e;
  }
}

/** Host file operations in flight at once: placing thousands of small files is latency, not bandwidth. */
const PARALLEL_FS = 16;

/** `f` over `items`, PARALLEL_FS at a time; after a failure nothing new starts, and the first error is thrown once all have stopped. */
async function inParallel<T>(items: readonly T[], f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      try {
        await f(items[next++]!);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const done = await Promise.allSettled(Array.from({ length: Math.min(PARALLEL_FS, items.length) }, worker));
  const bad = done.find((r) => r.status === "rejected");
  if (bad) throw (bad as PromiseRejectedResult).reason;
}

export async function materializeRoot(root: ImageRoot, dir: string, opts: MaterializeOptions = {}): Promise<void> {
  const nodes = root.sorted();
  // Every path checked before the first is written: a refused tree leaves nothing half made.
  const paths = new Map(nodes.map((n) => [n.path, hostPath(dir, n.path)] as const));
  await mkdir(dir, { recursive: true });
  // Directories, symbolic links and files the store holds already are made
  // synchronously: thousands of metadata calls, each a round trip through
  // libuv's thread pool when awaited, and most of a warm guest's assembly.
  // Directories first (in order, so parents exist), then everything in them.
  for (const n of nodes) if (n.type === "dir") mkdirSync(paths.get(n.path)!, { recursive: true });
  const first = new Map<number, string>();
  const followers: typeof nodes = [];
  const rest: typeof nodes = [];
  for (const n of nodes) {
    if (n.type === "dir") continue;
    if (n.type === "file" && n.linkGroup !== undefined) {
      if (first.has(n.linkGroup)) {
        followers.push(n);
        continue;
      }
      first.set(n.linkGroup, n.path);
    }
    const p = paths.get(n.path)!;
    if (n.type === "symlink") symlinkSync(n.linkTarget!, p);
    else if (!(n.type === "file" && opts.placeFileSync?.(n.blob!, p, n.mode & 0o7777))) rest.push(n);
  }
  await inParallel(rest, async (n) => {
    const p = paths.get(n.path)!;
    switch (n.type) {
      case "file":
        if (opts.placeFile) return opts.placeFile(n.blob!, p, n.mode & 0o7777);
        await root.copyBlob(n.blob!, p);
        break;
      default:
        // Device nodes and fifos come from the sandbox's own /dev.
        if (opts.devices) await writeFile(p, "");
        return;
    }
    await chmod(p, n.mode & 0o7777);
  });
  // Hard links once the file they share is there.
  await inParallel(followers, (n) => link(paths.get(first.get(n.linkGroup!)!)!, paths.get(n.path)!));
  // Directories last so a read-only mode does not block creating their contents.
  for (const n of nodes) if (n.type === "dir") chmodSync(paths.get(n.path)!, n.mode & 0o7777);
}

export async function removeTree(dir: string): Promise<void> {
  if (await lstat(dir).catch(() => undefined)) await rm(dir, { recursive: true, force: true });
}
