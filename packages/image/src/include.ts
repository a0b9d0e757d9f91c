// Reading an image config from a file, with apko's `include:` — another config
// merged under this one (deep merge: this file's settings win, lists are the
// included one's followed by this one's). The included path is hostile input:
// it is looked up beside the including file, then in the current directory
// (apko's rule), then in each --include-paths directory; the file found must
// lie, links resolved, inside one of those places or the top config's
// directory; it is read no further than the YAML size limit; a file may
// not include itself through any chain, and chains are at most MAX_DEPTH deep.

import { open, realpath, stat } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import type { Stats } from "node:fs";
import { ConfigError, isInside, YAML_LIMITS, type LoadedYaml, type Problem } from "@kiln/core";
import { imageConfigFrom, readImageInput, type ImageConfig, type ImageConfigInput } from "./config.js";

/** How many configs deep include may chain (the top one is depth 0). */
export const MAX_INCLUDE_DEPTH = 8;

export interface LoadImageConfigOptions {
  /** Extra directories an include may name files in (apko's --include-paths). */
  includePaths?: string[];
  /** The directory relative includes are also tried in (default: the process's). */
  cwd?: string;
}

interface Loaded {
  file: string;
  loaded: LoadedYaml<ImageConfigInput>;
}

function problem(file: string, message: string, at?: LoadedYaml<unknown>): ConfigError {
  const p: Problem = { file, path: at ? "include" : "", message, ...(at ? at.locate(["include"]) : {}) };
  return new ConfigError([p]);
}

/** A config file's text, read no further than the YAML size limit (a pipe or device too; not a directory). */
async function readBounded(file: string): Promise<string> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message;
    throw problem(file, `cannot read: ${reason}`);
  }
  try {
    if ((await fh.stat()).isDirectory()) throw problem(file, "cannot read: a directory, not a file");
    const max = YAML_LIMITS.maxBytes;
    const chunks: Buffer[] = [];
    let n = 0;
    while (n <= max) {
      const buf = Buffer.alloc(Math.min(1 << 16, max + 1 - n));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      n += bytesRead;
    }
    if (n > max) throw problem(file, `the file is larger than ${max >> 20} MiB`);
    return Buffer.concat(chunks).toString("utf8");
  } finally {
    await fh.close();
  }
}

/** The directories a config's include (or baseimage) name is looked up in, in order: beside FILE, the cwd, each include path. */
export function lookupBases(file: string, opts: Pick<LoadImageConfigOptions, "cwd" | "includePaths">): string[] {
  const cwd = opts.cwd ?? process.cwd();
  return [dirname(resolve(cwd, file)), cwd, ...(opts.includePaths ?? []).map((d) => resolve(cwd, d))];
}

/** The real paths of BASES (a base that cannot be resolved stays as it is): what a found name must lie inside. */
export function lookupRoots(bases: string[]): Promise<string[]> {
  return Promise.all(bases.map((b) => realpath(b).catch(() => b)));
}

/** The first place of NAME that exists (an absolute NAME is its own only place): its real path and stat. */
export async function findInBases(name: string, bases: string[]): Promise<{ real: string; st: Stats } | undefined> {
  const candidates = isAbsolute(name) ? [name] : bases.map((b) => resolve(b, name));
  for (const c of candidates) {
    const st = await stat(c).catch(() => undefined);
    if (st) return { real: await realpath(c), st };
  }
  return undefined;
}

/** The real path of the file an include names, or a ConfigError at the include key. */
async function resolveInclude(
  name: string,
  from: Loaded,
  roots: string[],
  opts: LoadImageConfigOptions,
): Promise<string> {
  const found = await findInBases(name, lookupBases(from.file, opts));
  if (found) {
    if (!roots.some((r) => isInside(r, found.real)))
      throw problem(
        from.file,
        `include ${JSON.stringify(name)} resolves to ${found.real}, outside the config's directory, the current directory and the include paths`,
        from.loaded,
      );
    return found.real;
  }
  throw problem(
    from.file,
    `include ${JSON.stringify(name)}: no such file beside ${from.file}, in the current directory${opts.includePaths?.length ? " or in the include paths" : ""}`,
    from.loaded,
  );
}

/** Merge INCLUDED under TOP as apko does: TOP's settings win, lists concatenate (INCLUDED's first). */
export function mergeImageInput(included: ImageConfigInput, top: ImageConfigInput): ImageConfigInput {
  const out: ImageConfigInput = { ...top };
  delete out.include;
  const isEmpty = (x: object | undefined) => x === undefined || Object.keys(x).length === 0;
  if (isEmpty(top.entrypoint) && included.entrypoint) out.entrypoint = included.entrypoint;
  for (const k of ["cmd", "stop-signal", "work-dir", "format"] as const) {
    if (!top[k] && included[k]) out[k] = included[k] as never;
  }
  for (const k of ["layering", "certificates", "os-release", "test"] as const) {
    if (top[k] === undefined && included[k] !== undefined) out[k] = included[k] as never;
  }
  if (!top.archs?.length && included.archs) out.archs = included.archs;
  for (const k of ["environment", "annotations"] as const) {
    if (top[k] || included[k]) out[k] = { ...(included[k] ?? {}), ...(top[k] ?? {}) };
  }
  for (const k of ["paths", "volumes"] as const) {
    if (top[k] || included[k]) out[k] = [...(included[k] ?? []), ...(top[k] ?? [])] as never;
  }
  if (top.accounts || included.accounts) {
    const a = top.accounts ?? {};
    const b = included.accounts ?? {};
    out.accounts = { ...a };
    const runAs = a["run-as"] !== undefined && a["run-as"] !== "" ? a["run-as"] : b["run-as"];
    if (runAs !== undefined) out.accounts["run-as"] = runAs;
    if (a.users || b.users) out.accounts.users = [...(b.users ?? []), ...(a.users ?? [])];
    if (a.groups || b.groups) out.accounts.groups = [...(b.groups ?? []), ...(a.groups ?? [])];
  }
  if (top.contents || included.contents) {
    const a = top.contents ?? {};
    const b = included.contents ?? {};
    out.contents = { ...a };
    for (const k of [
      "keyring",
      "runtime_keyring",
      "build_repositories",
      "runtime_repositories",
      "repositories",
      "packages",
    ] as const) {
      if (a[k] || b[k]) out.contents[k] = [...(b[k] ?? []), ...(a[k] ?? [])] as never;
    }
    if (!a.baseimage && b.baseimage) out.contents.baseimage = b.baseimage;
  }
  // As in apko, vcs-url is not taken from an included file.
  return out;
}

/** Each file of the chain checked on its own (problems placed in it); the value with every include merged. */
async function loadChain(
  top: Loaded,
  roots: string[],
  opts: LoadImageConfigOptions,
): Promise<{ value: ImageConfigInput; includes: string[] }> {
  const seen = [await realpath(top.file).catch(() => resolve(top.file))];
  const chain: Loaded[] = [top];
  for (let cur = top; cur.loaded.value.include !== undefined;) {
    const name = cur.loaded.value.include;
    if (chain.length > MAX_INCLUDE_DEPTH)
      throw problem(cur.file, `include chains more than ${MAX_INCLUDE_DEPTH} configs deep`, cur.loaded);
    const real = await resolveInclude(name, cur, roots, opts);
    if (seen.includes(real))
      throw problem(
        cur.file,
        `include ${JSON.stringify(name)} makes a cycle: ${[...seen, real].join(" -> ")}`,
        cur.loaded,
      );
    seen.push(real);
    const next = { file: real, loaded: readImageInput(real, await readBounded(real)) };
    chain.push(next);
    cur = next;
  }
  for (const c of chain) {
    const own = { ...c.loaded.value };
    delete own.include;
    imageConfigFrom(c.file, own, c.loaded);
  }
  let value = chain.at(-1)!.loaded.value;
  for (const c of chain.slice(0, -1).reverse()) value = mergeImageInput(value, c.loaded.value);
  return { value, includes: seen.slice(1) };
}

/** Read, merge (include) and validate an image config file; throws ConfigError naming file:line:col. */
export async function loadImageConfig(file: string, opts: LoadImageConfigOptions = {}): Promise<ImageConfig> {
  const loaded = readImageInput(file, await readBounded(file));
  if (loaded.value.include === undefined) return imageConfigFrom(file, loaded.value, loaded);
  const roots = await lookupRoots(lookupBases(file, opts));
  const { value, includes } = await loadChain({ file, loaded }, roots, opts);
  const cfg = imageConfigFrom(file, value, loaded);
  cfg.includes = includes;
  return cfg;
}
