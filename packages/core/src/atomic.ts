// Atomic replacement of files and directories: the new content is written
// to a temporary name beside the target and renamed over it only once it is
// complete, so readers see the old version or the new one, never half of
// either. Every temporary name has one shape, `.NAME.kiln-tmp-PID-RANDOM`
// (hidden, in the target's directory, so the rename stays on one file
// system): a crash leaves something that says what it was for and which
// process wrote it. On failure the temporary is removed.

import { randomBytes } from "node:crypto";
import { chmod, link, lstat, mkdir, open, rename, rm, stat, unlink } from "node:fs/promises";
import { KilnError } from "./errors.js";
import { basename, dirname, join } from "node:path";

/** The marker every kiln temporary name contains. */
export const TEMP_MARKER = ".kiln-tmp-";

/**
 * A fresh temporary path beside `target`: `.NAME.kiln-tmp-PID-RANDOM[SUFFIX]`,
 * or `.kiln-tmp-PID-RANDOM[SUFFIX]` when NAME is too long for that to be a
 * valid file name.
 */
export function tempPathFor(target: string, suffix = ""): string {
  const tail = `${TEMP_MARKER}${process.pid}-${randomBytes(4).toString("hex")}${suffix}`;
  const name = `.${basename(target)}${tail}`;
  return join(dirname(target), Buffer.byteLength(name) <= 255 ? name : tail);
}

export interface AtomicWriteOptions {
  /** The new file's exact mode (set with chmod, so not narrowed by the umask). Default: 0o666 less the umask. */
  mode?: number;
  /** fsync the file before the rename and its directory after, for content that must survive a power loss (keys, indexes, published objects). */
  fsync?: boolean;
  /** Refuse (EEXIST) instead of replacing an existing target; done with link(2), so two writers cannot both win. */
  noReplace?: boolean;
  /** Appended to the temporary name (e.g. ".apk" for tools that look at the extension). */
  tempSuffix?: string;
}

async function syncPath(path: string, flags: string): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    await syncPath(dir, "r");
  } catch (e) {
    // Some file systems cannot fsync a directory; the rename itself is still atomic.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EISDIR" && code !== "EINVAL" && code !== "EPERM" && code !== "EACCES") throw e;
  }
}

/** Replacing something that is not a file (a directory, a device such as /dev/null, a fifo, a socket) is refused. */
export class AtomicTargetError extends KilnError {
  readonly code = "NOT_A_REGULAR_FILE";
}

const KINDS: Array<[string, (s: Awaited<ReturnType<typeof lstat>>) => boolean]> = [
  ["a directory", (s) => s.isDirectory()],
  ["a character device", (s) => s.isCharacterDevice()],
  ["a block device", (s) => s.isBlockDevice()],
  ["a fifo", (s) => s.isFIFO()],
  ["a socket", (s) => s.isSocket()],
];

/** Throws unless `target` is absent, a regular file or a symbolic link (which a rename replaces, never follows). */
async function checkReplaceable(target: string): Promise<void> {
  const st = await lstat(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT" || e.code === "ENOTDIR") return undefined;
    throw e;
  });
  if (!st || st.isFile() || st.isSymbolicLink()) return;
  const kind = KINDS.find(([, is]) => is(st))?.[0] ?? "not a regular file";
  throw new AtomicTargetError(`${target}: is ${kind}, not a file: refusing to replace it`);
}

async function commit(tmp: string, target: string, noReplace: boolean | undefined): Promise<void> {
  if (!noReplace) await checkReplaceable(target);
  if (noReplace) {
    await link(tmp, target);
    await unlink(tmp);
  } else await rename(tmp, target);
}

/**
 * Replace the file `target` with what `write` puts at the temporary path it
 * is given (a stream, a copy, another program's output); returns what
 * `write` returns. The temporary is removed if anything fails.
 */
export async function replaceAtomic<T>(
  target: string,
  write: (tmp: string) => Promise<T>,
  opts: AtomicWriteOptions = {},
): Promise<T> {
  await checkReplaceable(target);
  const tmp = tempPathFor(target, opts.tempSuffix);
  try {
    const result = await write(tmp);
    if (opts.mode !== undefined) await chmod(tmp, opts.mode);
    if (opts.fsync) await syncPath(tmp, "r+");
    await commit(tmp, target, opts.noReplace);
    if (opts.fsync) await syncDir(dirname(target));
    return result;
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Write `data` to `target` atomically (see replaceAtomic). */
export async function writeFileAtomic(
  target: string,
  data: string | Uint8Array,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  await replaceAtomic(
    target,
    async (tmp) => {
      const fh = await open(tmp, "wx", opts.mode ?? 0o666);
      try {
        await fh.writeFile(data);
      } finally {
        await fh.close();
      }
    },
    opts,
  );
}

/**
 * Put the finished directory `tmp` at `target`, replacing whatever is there
 * only once the new one is complete: the old one is moved aside, the new one
 * renamed in, the old one removed (and moved back if the rename fails).
 */
export async function installDir(tmp: string, target: string): Promise<void> {
  if (!(await stat(target).catch(() => undefined))) {
    await rename(tmp, target);
    return;
  }
  const old = tempPathFor(target, "-old");
  await rename(target, old);
  try {
    await rename(tmp, target);
  } catch (e) {
    await rename(old, target).catch(() => {});
    throw e;
  }
  await rm(old, { recursive: true, force: true });
}

/**
 * Replace the directory `target` with the one `write` fills at the
 * temporary path it is given (created empty); the temporary tree is removed
 * if anything fails.
 */
export async function replaceDirAtomic<T>(target: string, write: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = tempPathFor(target);
  try {
    await mkdir(dirname(target), { recursive: true });
    await mkdir(tmp);
    const result = await write(tmp);
    await installDir(tmp, target);
    return result;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
