// Host files a recipe can make kiln touch. A recipe is untrusted input: kiln
// reads a local source (`file://`), a keyring entry or the source directory
// only inside the directories the user vouched for (the recipe's own
// directory, an explicit --source-dir, a file:// mirror's directory), after
// following every symlink, never a file with other hard links, never a
// private key; and the steps kiln runs on the host (fetch, deb-unpack) read
// and write only inside the build's workspace, never through a symlink a
// guest step planted there. Refusals name the path the recipe gave, never
// anything about the file (no size, no hash, no content).

import { isInside, KilnError } from "@kiln/core";
import { constants as FS } from "node:fs";
import * as fsp from "node:fs/promises";
import { isAbsolute, join, normalize, posix, relative, sep } from "node:path";

export class HostFileError extends KilnError {
  readonly code = "HOST_FILE_REFUSED";
}

/** A directory a recipe may read from. */
export interface FileRoot {
  dir: string;
  /** How to name it in errors: "the recipe's directory", "--source-dir". */
  what: string;
  /** Accept files with several hard links (a file:// mirror built with `cp -al`); never for recipe directories. */
  allowHardLinks?: boolean;
}

const PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/** True when `head` (a file's first bytes) holds a PEM private key (RSA, EC, PKCS#8, OpenSSH). */
export function looksLikePrivateKey(head: Buffer): boolean {
  return PRIVATE_KEY.test(head.toString("latin1"));
}

function describeRoots(roots: readonly FileRoot[]): string {
  return roots.map((r) => `${r.what} (${r.dir})`).join(" or ");
}

/** The real path of each root; roots that do not exist are dropped. */
async function realRoots(roots: readonly FileRoot[]): Promise<Array<FileRoot & { real: string }>> {
  const out: Array<FileRoot & { real: string }> = [];
  for (const r of roots) {
    const real = await fsp.realpath(r.dir).catch(() => undefined);
    if (real) out.push({ ...r, real });
  }
  return out;
}

export interface ConfinedFile {
  handle: fsp.FileHandle;
  /** The file's real path. */
  path: string;
  size: number;
}

/**
 * Open `path` for reading if, after following every symlink, it is a regular
 * file inside one of `roots`, has no other hard links (unless the root allows
 * them) and is not a private key. `subject` names the request in errors (the
 * URI or keyring entry as the recipe wrote it).
 */
export async function openConfined(path: string, roots: readonly FileRoot[], subject: string): Promise<ConfinedFile> {
  const refuse = (why: string): never => {
    throw new HostFileError(`${subject}: ${why}`);
  };
  const outside = () =>
    refuse(
      roots.length
        ? `refusing to read ${path}: it is outside ${describeRoots(roots)}; ` +
            "local files must lie in the recipe's directory or a --source-dir given on the command line"
        : `refusing to read ${path}: no directory was given where local files may be read`,
    );
  if (path.includes("\0")) refuse("the path contains a NUL byte");
  if (!isAbsolute(path)) refuse(`${path} is not an absolute path`);
  const lexical = normalize(path);
  const real = await realRoots(roots);
  // Lexically outside: refused without looking at the file at all.
  if (!real.some((r) => isInside(r.dir, lexical) || isInside(r.real, lexical))) outside();
  let target: string;
  try {
    target = await fsp.realpath(lexical);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return refuse(code === "ENOENT" ? `${path}: no such file` : `cannot read ${path} (${code ?? "error"})`);
  }
  const root = real.find((r) => isInside(r.real, target));
  if (!root) return outside(); // a symlink that leads out
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(target, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  } catch (e) {
    return refuse(`cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) refuse(`${path} is not a regular file`);
    if (st.nlink > 1 && !root.allowHardLinks)
      refuse(`refusing to read ${path}: it has ${st.nlink} hard links, so it may be another file's content`);
    const head = Buffer.alloc(Math.min(st.size, 64 << 10));
    await handle.read(head, 0, head.length, 0);
    if (looksLikePrivateKey(head)) refuse(`refusing to read ${path}: it holds a private key`);
    return { handle, path: target, size: st.size };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** Read a whole confined file (small ones: keys). */
export async function readConfined(path: string, roots: readonly FileRoot[], subject: string): Promise<Buffer> {
  const f = await openConfined(path, roots, subject);
  try {
    return await f.handle.readFile();
  } finally {
    await f.handle.close();
  }
}

// --- the workspace -----------------------------------------------------------

/** The workspace-relative form (`a/b`, "" for the root) of a guest path, or undefined when it is not under `guestBase`. */
export function underGuestDir(guestBase: string, guestPath: string): string | undefined {
  const p = posix.normalize(guestPath);
  if (p === guestBase) return "";
  if (!p.startsWith(guestBase + "/")) return undefined;
  return p.slice(guestBase.length + 1).replace(/\/+$/, "");
}

/** Join a relative path under `base` lexically; undefined when it would leave it. */
export function joinInside(base: string, rel: string): string | undefined {
  if (rel.includes("\0") || posix.isAbsolute(rel)) return undefined;
  const p = join(base, rel);
  return isInside(base, p) ? p : undefined;
}

/**
 * Make sure `rel` (relative, lexically inside `base`) is a real directory
 * under `base`, creating what is missing, never following a symlink: a step
 * in the guest may have put one anywhere in the workspace. Returns its path.
 */
export async function ensureDirUnder(base: string, rel: string, what: string): Promise<string> {
  const p = joinInside(base, rel);
  if (p === undefined) throw new HostFileError(`${what}: ${rel} is outside the workspace`);
  let cur = base;
  for (const seg of relative(base, p).split(sep).filter(Boolean)) {
    cur = join(cur, seg);
    const st = await fsp.lstat(cur).catch(() => undefined);
    if (!st) {
      await fsp.mkdir(cur, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "EEXIST") throw e;
      });
      const again = await fsp.lstat(cur);
      if (!again.isDirectory())
        throw new HostFileError(`${what}: ${relative(base, cur)} in the workspace is not a directory`);
    } else if (st.isSymbolicLink())
      throw new HostFileError(
        `${what}: refusing ${relative(base, cur)} in the workspace: it is a symlink (kiln does not follow links out of the workspace)`,
      );
    else if (!st.isDirectory())
      throw new HostFileError(`${what}: ${relative(base, cur)} in the workspace is not a directory`);
  }
  return p;
}

/** The real path of an existing file `rel` under `base`, refused when a symlink leads it out. */
export async function fileUnder(base: string, rel: string, what: string): Promise<string> {
  const p = joinInside(base, rel);
  if (p === undefined) throw new HostFileError(`${what}: ${rel} is outside the workspace`);
  const realBase = await fsp.realpath(base);
  let real: string;
  try {
    real = await fsp.realpath(p);
  } catch (e) {
    throw new HostFileError(
      `${what}: ${rel}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file in the workspace" : (e as Error).message}`,
    );
  }
  if (!isInside(realBase, real))
    throw new HostFileError(`${what}: refusing ${rel}: a symlink leads it out of the workspace`);
  const st = await fsp.stat(real);
  if (!st.isFile()) throw new HostFileError(`${what}: ${rel} is not a regular file`);
  return real;
}
