// The host-side work done on a recipe's behalf besides its steps (which are
// in steps/): copying its source directory into the workspace and reading
// the keys its environment names; runNativeStep runs one host step by its
// kind. Everything here treats the recipe and the workspace (which the
// guest's steps write) as hostile: paths stay under the workspace, no
// symlink is followed out of it, local files come only from the directories
// the user vouched for (see host-files.ts).

import { isInside } from "@kiln/core";
import { createPublicKey } from "node:crypto";
import { constants as FS } from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, isAbsolute, join, resolve } from "node:path";
import type { CompiledStep } from "./compile.js";
import { HostFileError, looksLikePrivateKey, readConfined, type FileRoot } from "./host-files.js";
import { NativeStepError, stepKindOf, type FetchedSource, type NativeContext } from "./steps/index.js";

export { NativeStepError, workspaceRelative, type FetchedSource, type NativeContext } from "./steps/index.js";

/** Run one native step. Returns the source it fetched, if any. Errors name the recipe and the step. */
export async function runNativeStep(step: CompiledStep, ctx: NativeContext): Promise<FetchedSource | undefined> {
  const kind = stepKindOf(step, ctx.file);
  if (kind.where !== "host")
    throw new NativeStepError(`${ctx.file}: ${step.origin}: step "${step.name}" runs in the guest, not on the host`);
  return (await kind.run(step, ctx)).source;
}

// --- the source directory ----------------------------------------------------

/**
 * Copy the recipe's source directory into the workspace. Its real path must be
 * inside `roots`; symlinks are copied as written (inside the guest they point
 * into the guest); regular files with other hard links and private keys are
 * refused; anything else (fifos, sockets, devices) is left out.
 */
export async function copySourceDir(
  src: string,
  dest: string,
  roots: readonly FileRoot[],
  subject: string,
): Promise<boolean> {
  const real = await fsp.realpath(src).catch(() => undefined);
  if (!real || !(await fsp.stat(real)).isDirectory()) return false;
  const realRoots = await Promise.all(roots.map((r) => fsp.realpath(r.dir).catch(() => resolve(r.dir))));
  if (!realRoots.some((r) => isInside(r, real)))
    throw new HostFileError(
      `${subject}: the source directory ${src} leads to ${real}, outside the recipe's directory and --source-dir`,
    );
  const walk = async (from: string, to: string): Promise<void> => {
    for (const name of (await fsp.readdir(from)).sort()) {
      const s = join(from, name);
      const d = join(to, name);
      const st = await fsp.lstat(s);
      if (st.isDirectory()) {
        await fsp.mkdir(d, { recursive: true, mode: st.mode & 0o7777 });
        await walk(s, d);
      } else if (st.isSymbolicLink()) {
        await fsp.rm(d, { force: true });
        await fsp.symlink(await fsp.readlink(s), d);
      } else if (st.isFile()) {
        await copyOneFile(s, d, st.nlink, subject);
      }
    }
  };
  await walk(real, dest);
  return true;
}

async function copyOneFile(src: string, dest: string, nlink: number, subject: string): Promise<void> {
  if (nlink > 1)
    throw new HostFileError(
      `${subject}: refusing ${src} in the source directory: it has ${nlink} hard links, so it may be another file's content`,
    );
  const fh = await fsp.open(src, FS.O_RDONLY | FS.O_NOFOLLOW);
  try {
    const head = Buffer.alloc(64 << 10);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (looksLikePrivateKey(head.subarray(0, bytesRead)))
      throw new HostFileError(`${subject}: refusing ${src} in the source directory: it holds a private key`);
    const st = await fh.stat();
    await fsp.rm(dest, { force: true });
    const out = await fsp.open(dest, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, st.mode & 0o7777);
    try {
      for await (const chunk of fh.createReadStream({ start: 0, autoClose: false })) await out.write(chunk as Buffer);
    } finally {
      await out.close();
    }
  } finally {
    await fh.close();
  }
}

// --- keys --------------------------------------------------------------------

export interface KeyringSources {
  /** Entries the user (distro.yaml, the command line) gave, read as they are. */
  trusted: ReadonlySet<string>;
  /** Where the recipe's own entries may be read; relative entries are relative to `baseDir`. */
  roots: readonly FileRoot[];
  baseDir: string;
  subject: string;
}

/**
 * The public keys a guest trusts, from keyring entries. The recipe's own
 * entries are read only inside the roots (never a private key); every key,
 * trusted ones included, is reduced to its public half before it can reach
 * a guest's /etc/apk/keys.
 */
export async function keyringKeys(
  entries: readonly string[],
  src: KeyringSources,
): Promise<Array<{ name: string; pem: Buffer }>> {
  const out = [];
  for (const entry of entries) {
    const what = `${src.subject}: keyring entry ${entry}`;
    const pem = src.trusted.has(entry)
      ? await fsp.readFile(entry)
      : await readConfined(isAbsolute(entry) ? entry : join(src.baseDir, entry), src.roots, what);
    out.push({ name: basename(entry), pem: publicHalf(pem, what) });
  }
  return out;
}

/** Only the public half of a key (a private key handed over by mistake loses its secret part here). */
export function publicHalf(pem: Buffer, what: string): Buffer {
  try {
    return Buffer.from(createPublicKey({ key: pem, format: "pem" }).export({ type: "spki", format: "pem" }).toString());
  } catch (e) {
    throw new HostFileError(`${what}: not a PEM public key`, { cause: e });
  }
}
