// Generator `cmd:` provides: an executable regular file (any x bit) in bin,
// sbin, usr/bin or usr/sbin provides `cmd:<name>=<package version>`; so does
// a symlink there whose target, resolved inside the package, is such a file
// (symlinks are never read as files).

import * as fsp from "node:fs/promises";
import { join, posix } from "node:path";
import { BIN_DIRS, type Generator, type ScaContext, type ScaFile, type WalkEntry } from "./types.js";

export const commands: Generator = {
  name: "commands",
  async visit(f: ScaFile, ctx: ScaContext): Promise<void> {
    if (!BIN_DIRS.has(f.parent)) return;
    if (f.category === "symlink") {
      const target = await fsp.readlink(join(ctx.dir, f.rel));
      const resolved = resolveInPackage(f.rel, target, ctx.byPath);
      if (resolved && resolved.kind === "file" && resolved.mode & 0o111) {
        ctx.details.commands.push({ path: f.rel, name: f.base, viaSymlink: resolved.rel });
        provide(f, ctx);
      }
      return;
    }
    if (f.category === "debug" || !(f.entry.mode & 0o111)) return;
    ctx.details.commands.push({ path: f.rel, name: f.base });
    provide(f, ctx);
  },
};

function provide(f: ScaFile, ctx: ScaContext): void {
  ctx.addSelf(`cmd:${f.base}`);
  ctx.addProvide(`cmd:${f.base}=${ctx.version}`, f.rel);
}

/** Resolve a symlink one step, lexically, inside the package (absolute targets from the package root); undefined if the target is not in the package. */
export function resolveInPackage(
  linkRel: string,
  target: string,
  byPath: ReadonlyMap<string, WalkEntry>,
): WalkEntry | undefined {
  const abs = target.startsWith("/")
    ? posix.normalize(target)
    : posix.normalize(posix.join("/", posix.dirname(linkRel), target));
  return byPath.get(abs.replace(/^\/+/, ""));
}
