// The steps kiln performs itself, on the host, for a recipe: `fetch`
// (download or read a local source, verify it, extract or copy it into the
// workspace) and `deb-unpack`; plus the other host-side work done on a
// recipe's behalf: copying its source directory into the workspace and
// reading the keys its environment names. Everything here treats the recipe
// and the workspace (which the guest's steps write) as hostile: paths stay
// under the workspace, no symlink is followed out of it, local files come
// only from the directories the user vouched for (see host-files.ts).

import { assertPathComponent, isInside, KilnError } from "@kiln/core";
import { createPublicKey } from "node:crypto";
import { constants as FS } from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, isAbsolute, join, posix, resolve } from "node:path";
import type { CompiledStep } from "./compile.js";
import { unpackDeb } from "./deb.js";
import { extractArchive, fetchSource, type MirrorOptions } from "./fetch-source.js";
import {
  ensureDirUnder,
  fileUnder,
  HostFileError,
  looksLikePrivateKey,
  readConfined,
  underGuestDir,
  type FileRoot,
} from "./host-files.js";
import type { BuildLog } from "./log-capture.js";
import { WORKSPACE_DIR } from "./substitute.js";

export class NativeStepError extends KilnError {
  readonly code = "NATIVE_STEP";
}

export interface NativeContext {
  /** The recipe file, for messages. */
  file: string;
  /** Host directory mounted at /home/build. */
  workspace: string;
  /** Where file:// sources may be read. */
  fileRoots: readonly FileRoot[];
  cacheDir: string;
  mirrors?: MirrorOptions;
  log: BuildLog;
}

/** A source as recorded in the SBOM. */
export interface FetchedSource {
  uri: string;
  sha256?: string;
  sha512?: string;
}

/**
 * A guest path (absolute, or relative to `baseRel`, itself workspace-relative)
 * as a workspace-relative path; refused when it is not inside the workspace.
 */
export function workspaceRelative(baseRel: string, p: string, what: string): string {
  const abs = posix.isAbsolute(p) ? posix.normalize(p) : posix.join(WORKSPACE_DIR, baseRel, p);
  const rel = underGuestDir(WORKSPACE_DIR, abs);
  if (rel === undefined)
    throw new NativeStepError(
      `${what}: ${p} is outside the workspace ${WORKSPACE_DIR} (kiln performs this step on the host, inside the workspace only)`,
    );
  return rel;
}

/** Run one native step. Returns the source it fetched, if any. Errors name the recipe and the step. */
export async function runNativeStep(step: CompiledStep, ctx: NativeContext): Promise<FetchedSource | undefined> {
  const where = `${ctx.file}: ${step.origin}`;
  try {
    return await nativeStep(step, ctx, where);
  } catch (e) {
    if (!(e instanceof KilnError) || e.message.startsWith(ctx.file)) throw e;
    throw new NativeStepError(`${where}: ${e.message}`, { cause: e, kind: e.kind, explanation: e.explanation });
  }
}

async function nativeStep(step: CompiledStep, ctx: NativeContext, where: string): Promise<FetchedSource | undefined> {
  const wdRel = workspaceRelative("", step.workingDirectory, `${where}: working-directory`);
  const w = step.with ?? {};
  if (step.native === "fetch") return fetchStep(w, wdRel, where, ctx);
  if (step.native === "deb-unpack") {
    const deb = await fileUnder(ctx.workspace, workspaceRelative(wdRel, w.deb ?? "", `${where}: deb`), `${where}: deb`);
    const destRel = workspaceRelative(wdRel, w.directory || ".", `${where}: directory`);
    const dest = await ensureDirUnder(ctx.workspace, destRel, `${where}: directory`);
    await unpackDeb(deb, dest, { mergedUsr: true });
    return undefined;
  }
  throw new NativeStepError(`${where}: unknown native step ${JSON.stringify(step.native)}`);
}

async function fetchStep(
  w: Record<string, string>,
  wdRel: string,
  where: string,
  ctx: NativeContext,
): Promise<FetchedSource> {
  if (w["expected-none"])
    throw new NativeStepError(
      `${where}: expected-none is refused: pin the source with expected-sha256 or expected-sha512`,
    );
  const uri = w.uri ?? "";
  const spec = {
    uri,
    ...(w["expected-sha256"] ? { expectedSha256: w["expected-sha256"] } : {}),
    ...(w["expected-sha512"] ? { expectedSha512: w["expected-sha512"] } : {}),
  };
  const destRel = workspaceRelative(wdRel, w.directory || ".", `${where}: directory`);
  const cached = await fetchSource(spec, {
    cacheDir: ctx.cacheDir,
    ...(ctx.mirrors ?? {}),
    fileRoots: ctx.fileRoots,
    onProgress: (e) => e.kind !== "data" && ctx.log.write(`# fetch ${e.kind} ${e.uri}\n`),
  });
  const dest = await ensureDirUnder(ctx.workspace, destRel, `${where}: directory`);
  if (w.extract === "false") {
    let name: string;
    try {
      name = assertPathComponent(basename(new URL(uri).pathname), "the fetched file's name");
    } catch (e) {
      throw new NativeStepError(`${where}: cannot name the fetched file after ${uri}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const target = join(dest, name);
    // Whatever is there (a symlink planted by a guest step included) is replaced, never written through.
    const st = await fsp.lstat(target).catch(() => undefined);
    if (st?.isDirectory()) throw new NativeStepError(`${where}: ${name} is a directory in the workspace`);
    if (st) await fsp.unlink(target);
    await fsp.copyFile(cached, target, FS.COPYFILE_EXCL);
  } else {
    await extractArchive(cached, dest, { stripComponents: Number(w["strip-components"] ?? 1) });
  }
  return {
    uri,
    ...(spec.expectedSha256 ? { sha256: spec.expectedSha256 } : {}),
    ...(spec.expectedSha512 ? { sha512: spec.expectedSha512 } : {}),
  };
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
