// Writing an image root's tree to a real directory (a build guest). Paths in
// the tree are canonical (no symlink in any parent), so creating them in
// sorted order in a fresh directory can never follow a link out of it.

import { copyFile, chmod, link, mkdir, rm, symlink, writeFile, lstat } from "node:fs/promises";
import { join } from "node:path";
import type { ImageRoot } from "./root.js";

export async function materializeRoot(root: ImageRoot, dir: string, opts: { devices?: boolean } = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  const first = new Map<number, string>();
  for (const n of root.sorted()) {
    const p = join(dir, n.path);
    switch (n.type) {
      case "dir":
        await mkdir(p, { recursive: true });
        break;
      case "file": {
        const group = n.linkGroup !== undefined ? first.get(n.linkGroup) : undefined;
        if (group !== undefined) {
          await link(join(dir, group), p);
          continue;
        }
        await copyFile(root.blobPath(n.blob!.sha1), p);
        if (n.linkGroup !== undefined) first.set(n.linkGroup, n.path);
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
  for (const n of root.sorted((x) => x.type === "dir")) await chmod(join(dir, n.path), n.mode & 0o7777);
}

export async function removeTree(dir: string): Promise<void> {
  if (await lstat(dir).catch(() => undefined)) await rm(dir, { recursive: true, force: true });
}
