// Writing an image root's tree to a real directory (a build guest). Paths in
// the tree are canonical (no symlink in any parent), so creating them in
// sorted order in a fresh directory can never follow a link out of it; each
// is joined segment by segment (joinUnder), so a node whose path holds `..`
// or an empty segment is refused rather than written beside the directory.

import { chmod, link, mkdir, rm, symlink, writeFile, lstat } from "node:fs/promises";
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

export async function materializeRoot(root: ImageRoot, dir: string, opts: MaterializeOptions = {}): Promise<void> {
  const nodes = root.sorted();
  // Every path checked before the first is written: a refused tree leaves nothing half made.
  const paths = new Map(nodes.map((n) => [n.path, hostPath(dir, n.path)] as const));
  await mkdir(dir, { recursive: true });
  const first = new Map<number, string>();
  for (const n of nodes) {
    const p = paths.get(n.path)!;
    switch (n.type) {
      case "dir":
        await mkdir(p, { recursive: true });
        break;
      case "file": {
        const group = n.linkGroup !== undefined ? first.get(n.linkGroup) : undefined;
        if (group !== undefined) {
          await link(paths.get(group)!, p);
          continue;
        }
        if (n.linkGroup !== undefined) first.set(n.linkGroup, n.path);
        if (opts.placeFile) {
          await opts.placeFile(n.blob!, p, n.mode & 0o7777);
          continue;
        }
        await root.copyBlob(n.blob!, p);
        break;
      }
      case "symlink":
        await symlink(n.linkTarget!, p);
        continue;
      default:
        // Device nodes and fifos come from the sandbox's own /dev.
        if (opts.devices) await writeFile(p, "");
        continue;
    }
    await chmod(p, n.mode & 0o7777);
  }
  // Directories last so a read-only mode does not block creating their contents.
  for (const n of nodes) if (n.type === "dir") await chmod(paths.get(n.path)!, n.mode & 0o7777);
}

export async function removeTree(dir: string): Promise<void> {
  if (await lstat(dir).catch(() => undefined)) await rm(dir, { recursive: true, force: true });
}
