// The driver of dependency detection, as melange's SCA runs its generators:
// walk the package's output directory, decide once what each file is (ELF
// parsed here, no external tools), show every file to each generator of the
// list in turn, and collect their depends and provides.

import { isValidVersion } from "@kiln/apk";
import * as fsp from "node:fs/promises";
import { join, posix } from "node:path";
import { commands } from "./commands.js";
import { ElfError, readElf } from "./elf.js";
import { pkgConfig } from "./pkgconfig.js";
import { interpreters } from "./shebang.js";
import { neededLibraries } from "./shlib-depends.js";
import { sharedLibraryProvides } from "./shlib-provides.js";
import {
  DEFAULT_LIB_DIRS,
  type DetectedDependencies,
  type DetectionDetails,
  type DetectOptions,
  type Generator,
  isPkgConfigDir,
  type ScaContext,
  type ScaFile,
  SCRIPT_DIRS,
  validToken,
  type WalkEntry,
} from "./types.js";

/** The generators run by default, in the order they see each file. */
export const DEFAULT_GENERATORS: readonly Generator[] = [
  commands,
  pkgConfig,
  neededLibraries,
  sharedLibraryProvides,
  interpreters,
];

export async function walk(root: string): Promise<WalkEntry[]> {
  const out: WalkEntry[] = [];
  const visit = async (rel: string): Promise<void> => {
    const names = (await fsp.readdir(rel ? join(root, rel) : root)).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await fsp.lstat(join(root, r));
      if (st.isDirectory()) await visit(r);
      else
        out.push({
          rel: r,
          kind: st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : "other",
          mode: st.mode,
          size: st.size,
        });
    }
  };
  await visit("");
  return out;
}

async function readHead(path: string, n: number): Promise<Buffer> {
  const fh = await fsp.open(path, "r");
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * What a walked entry is, for the generators; undefined for entries none of
 * them looks at (device nodes, fifos). A malformed ELF file is reported in
 * the details' warnings and seen as "other"; loadable ELF objects are listed
 * in the details' `elf`.
 */
export async function classify(dir: string, e: WalkEntry, ctx: ScaContext): Promise<ScaFile | undefined> {
  if (e.kind === "other") return undefined;
  const f: ScaFile = {
    entry: e,
    rel: e.rel,
    parent: posix.dirname(e.rel),
    base: posix.basename(e.rel),
    abs: join(dir, e.rel),
    category: "other",
  };
  if (e.kind === "symlink") return { ...f, category: "symlink" };
  if (e.rel.startsWith("usr/lib/debug/")) return { ...f, category: "debug" }; // separated debug info: not loadable objects
  if (f.base.endsWith(".pc") && isPkgConfigDir(f.parent, ctx.libDirs)) return { ...f, category: "pkgconfig" };
  if (e.size < 4) return f;
  const head = await readHead(f.abs, 256);
  if (head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46) {
    let elf;
    try {
      elf = await readElf(f.abs);
    } catch (err) {
      ctx.details.warnings.push(err instanceof ElfError ? err.message : `${e.rel}: ${(err as Error).message}`);
      return f;
    }
    if (!elf || (elf.type !== 2 && elf.type !== 3)) return f; // relocatable objects, core files
    ctx.details.elf.push({
      path: e.rel,
      class: elf.class,
      endian: elf.endian,
      type: elf.type,
      machine: elf.machine,
      ...(elf.interp !== undefined ? { interp: elf.interp } : {}),
      needed: elf.needed,
      ...(elf.soname !== undefined ? { soname: elf.soname } : {}),
      static: elf.interp === undefined && elf.needed.length === 0,
    });
    return { ...f, category: "elf", elf };
  }
  if (head[0] === 0x23 && head[1] === 0x21 && SCRIPT_DIRS.has(f.parent) && e.mode & 0o111) {
    const nl = head.indexOf(0x0a);
    return { ...f, category: "script", shebang: head.subarray(0, nl < 0 ? head.length : nl).toString("utf8") };
  }
  return f;
}

/** Details with nothing found yet. */
export function emptyDetails(): DetectionDetails {
  return {
    elf: [],
    sharedLibraries: [],
    commands: [],
    scripts: [],
    pkgconfig: [],
    selfProvides: [],
    reasons: {},
    warnings: [],
  };
}

/** The context generators add to, with the sets it fills. */
function newContext(dir: string, opts: DetectOptions, byPath: ReadonlyMap<string, WalkEntry>) {
  const details = emptyDetails();
  const depends = new Set<string>();
  const provides = new Set<string>();
  const self = new Set<string>();
  const reason = (token: string, path: string): void => {
    (details.reasons[token] ??= []).push(path);
  };
  const ctx: ScaContext = {
    dir,
    version: opts.version,
    libDirs: opts.libDirs ?? DEFAULT_LIB_DIRS,
    byPath,
    details,
    addDepend(t, path) {
      if (!validToken("dep", t)) {
        details.warnings.push(`${path}: ignoring dependency ${JSON.stringify(t)}: not a valid apk dependency`);
        return;
      }
      depends.add(t);
      reason(t, path);
    },
    addProvide(t, path) {
      if (!validToken("provide", t)) {
        details.warnings.push(`${path}: ignoring provide ${JSON.stringify(t)}: not a valid apk provide`);
        return;
      }
      provides.add(t);
      reason(t, path);
    },
    addSelf(t) {
      self.add(t);
    },
  };
  return { ctx, depends, provides, self };
}

/**
 * Scan a package's output directory for what it needs and provides, with
 * `generators` (default DEFAULT_GENERATORS: commands, pkg-config, needed
 * libraries, shared-library provides, interpreters — see each module).
 * Malformed ELF files and unparsable tokens are reported in details.warnings.
 */
export async function detectDependencies(
  dir: string,
  opts: DetectOptions,
  generators: readonly Generator[] = DEFAULT_GENERATORS,
): Promise<DetectedDependencies> {
  if (!isValidVersion(opts.version))
    throw new Error(`detectDependencies: ${JSON.stringify(opts.version)} is not a valid apk version`);
  const entries = await walk(dir);
  const { ctx, depends, provides, self } = newContext(dir, opts, new Map(entries.map((e) => [e.rel, e])));
  for (const e of entries) {
    const f = await classify(dir, e, ctx);
    if (!f) continue;
    for (const g of generators) await g.visit(f, ctx);
  }
  ctx.details.selfProvides = [...self].filter((t) => validToken("provide", t)).sort();
  return { depends: [...depends].sort(), provides: [...provides].sort(), details: ctx.details };
}
