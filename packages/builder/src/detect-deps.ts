// Automatic dependency detection over a package's output directory, as
// melange does it: ELF dynamic sections (parsed here, no external tools),
// commands, `#!` interpreters and pkg-config files; then merged with the
// recipe's declared dependencies.

import { KilnError } from "@kiln/core";
import * as fsp from "node:fs/promises";
import { posix, join } from "node:path";
import { type Dependency, isValidVersion, packageSatisfies, parseDependency, parseProvide } from "@kiln/apk";

// ---------------------------------------------------------------------------
// ELF

export interface ElfInfo {
  class: 32 | 64;
  endian: "le" | "be";
  /** e_type: 1 REL, 2 EXEC, 3 DYN, 4 CORE. */
  type: number;
  machine: number;
  /** PT_INTERP, the program loader. */
  interp?: string;
  /** DT_NEEDED, in order. */
  needed: string[];
  soname?: string;
  runpath: string[];
  /** Has a PT_DYNAMIC segment. */
  dynamic: boolean;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const MAX_TABLE = 64 << 20;

export class ElfError extends KilnError {
  readonly code = "BAD_ELF";
}

/**
 * Read an ELF file's program headers and dynamic section: 32/64-bit, little
 * and big endian. Returns null when the file is not ELF; throws ElfError when
 * it is ELF but malformed.
 */
export async function readElf(path: string): Promise<ElfInfo | null> {
  const fh = await fsp.open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const at = async (pos: number, len: number, what: string): Promise<Buffer> => {
      if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len < 0 || pos + len > size) {
        throw new ElfError(`${path}: ${what} (offset ${pos}, ${len} bytes) lies outside the file (${size} bytes)`);
      }
      const b = Buffer.alloc(len);
      const { bytesRead } = await fh.read(b, 0, len, pos);
      if (bytesRead !== len) throw new ElfError(`${path}: short read of ${what}`);
      return b;
    };
    if (size < 52) return null;
    const id = await at(0, 16, "identification");
    if (id[0] !== 0x7f || id[1] !== 0x45 || id[2] !== 0x4c || id[3] !== 0x46) return null;
    const cls = id[4];
    const data = id[5];
    if ((cls !== 1 && cls !== 2) || (data !== 1 && data !== 2))
      throw new ElfError(`${path}: unknown ELF class ${cls} or data encoding ${data}`);
    const is64 = cls === 2;
    const le = data === 1;
    const eh = await at(0, is64 ? 64 : 52, "ELF header");
    const u16 = (b: Buffer, o: number): number => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const word = (b: Buffer, o: number): number => {
      if (!is64) return u32(b, o);
      const v = le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    };
    const sword = (b: Buffer, o: number): number => {
      if (!is64) return le ? b.readInt32LE(o) : b.readInt32BE(o);
      const v = le ? b.readBigInt64LE(o) : b.readBigInt64BE(o);
      return v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER) ? -1 : Number(v);
    };
    const type = u16(eh, 16);
    const machine = u16(eh, 18);
    const phoff = word(eh, is64 ? 32 : 28);
    const shoff = word(eh, is64 ? 40 : 32);
    const phentsize = u16(eh, is64 ? 54 : 42);
    let phnum = u16(eh, is64 ? 56 : 44);
    const info: ElfInfo = {
      class: is64 ? 64 : 32,
      endian: le ? "le" : "be",
      type,
      machine,
      needed: [],
      runpath: [],
      dynamic: false,
    };
    if (phnum === 0xffff && shoff) {
      // PN_XNUM: the real count is in section header 0's sh_info.
      const sh0 = await at(shoff, is64 ? 64 : 40, "section header 0");
      phnum = u32(sh0, is64 ? 44 : 28);
    }
    if (phoff === 0 || phnum === 0) return info;
    const wantEnt = is64 ? 56 : 32;
    if (phentsize < wantEnt)
      throw new ElfError(`${path}: program header entries of ${phentsize} bytes (expected ${wantEnt})`);
    if (phnum * phentsize > MAX_TABLE) throw new ElfError(`${path}: ${phnum} program headers is too many`);
    const ph = await at(phoff, phnum * phentsize, "program headers");
    const loads: Array<{ vaddr: number; offset: number; filesz: number }> = [];
    let dyn: { offset: number; filesz: number } | undefined;
    let interp: { offset: number; filesz: number } | undefined;
    for (let i = 0; i < phnum; i++) {
      const o = i * phentsize;
      const pType = u32(ph, o);
      const offset = is64 ? word(ph, o + 8) : u32(ph, o + 4);
      const vaddr = is64 ? word(ph, o + 16) : u32(ph, o + 8);
      const filesz = is64 ? word(ph, o + 32) : u32(ph, o + 16);
      if (pType === PT_LOAD) loads.push({ vaddr, offset, filesz });
      else if (pType === PT_DYNAMIC) dyn = { offset, filesz };
      else if (pType === PT_INTERP) interp = { offset, filesz };
    }
    if (interp && interp.filesz > 0) {
      if (interp.filesz > 4096) throw new ElfError(`${path}: PT_INTERP of ${interp.filesz} bytes`);
      const b = await at(interp.offset, interp.filesz, "PT_INTERP");
      const z = b.indexOf(0);
      info.interp = (z < 0 ? b : b.subarray(0, z)).toString("utf8");
    }
    if (!dyn || dyn.filesz === 0) return info;
    info.dynamic = true;
    if (dyn.filesz > MAX_TABLE) throw new ElfError(`${path}: dynamic segment of ${dyn.filesz} bytes`);
    const db = await at(dyn.offset, dyn.filesz, "dynamic segment");
    const ent = is64 ? 16 : 8;
    const entries: Array<[number, number]> = [];
    for (let o = 0; o + ent <= db.length; o += ent) {
      const tag = sword(db, o);
      const val = word(db, o + (is64 ? 8 : 4));
      if (tag === DT_NULL) break;
      entries.push([tag, val]);
    }
    const strtabAddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
    const strsz = entries.find(([t]) => t === DT_STRSZ)?.[1];
    if (strtabAddr === undefined) {
      if (entries.some(([t]) => t === DT_NEEDED || t === DT_SONAME))
        throw new ElfError(`${path}: dynamic section without DT_STRTAB`);
      return info;
    }
    // DT_STRTAB is a virtual address: map it to a file offset through the PT_LOAD segments.
    const seg = loads.find((l) => strtabAddr >= l.vaddr && strtabAddr < l.vaddr + l.filesz);
    if (!seg) throw new ElfError(`${path}: DT_STRTAB address 0x${strtabAddr.toString(16)} is not in a loaded segment`);
    const strOff = strtabAddr - seg.vaddr + seg.offset;
    const strLen = Math.min(
      strsz ?? seg.vaddr + seg.filesz - strtabAddr,
      seg.vaddr + seg.filesz - strtabAddr,
      MAX_TABLE,
    );
    const strtab = await at(strOff, strLen, "dynamic string table");
    const str = (idx: number): string => {
      if (idx >= strtab.length) throw new ElfError(`${path}: dynamic string index ${idx} beyond the string table`);
      const z = strtab.indexOf(0, idx);
      return strtab.subarray(idx, z < 0 ? strtab.length : z).toString("utf8");
    };
    for (const [tag, val] of entries) {
      if (tag === DT_NEEDED) info.needed.push(str(val));
      else if (tag === DT_SONAME) info.soname = str(val);
      else if (tag === DT_RUNPATH || tag === DT_RPATH)
        info.runpath.push(
          ...str(val)
            .split(":")
            .filter((x) => x !== ""),
        );
    }
    return info;
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------
// pkg-config

export interface PkgConfigFile {
  name: string;
  version?: string;
  requires: string[];
  requiresPrivate: string[];
  variables: Record<string, string>;
  fields: Record<string, string>;
}

/** Parse a .pc file: variables expanded (`${var}`, `$$`), `pcfiledir` predefined as `pcfiledir`. */
export function parsePkgConfig(text: string, name: string, pcfiledir = ""): PkgConfigFile {
  const raw: Record<string, string> = { pcfiledir, pc_sysrootdir: "" };
  const fieldsRaw: Record<string, string> = {};
  const lines = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  for (let line of lines) {
    // Comments run from an unescaped "#" to the end of the line.
    line = line
      .replace(/(^|[^\\])#.*$/, "$1")
      .replace(/\\#/g, "#")
      .trim();
    if (line === "") continue;
    const m = /^([A-Za-z0-9_.]+)\s*([:=])\s*(.*)$/.exec(line);
    if (!m) continue;
    if (m[2] === "=") raw[m[1]!] = m[3]!;
    else fieldsRaw[m[1]!] = m[3]!;
  }
  const cache = new Map<string, string>();
  const expand = (v: string, depth: number): string => {
    if (depth > 64) throw new Error(`${name}.pc: variable expansion loops`);
    return v.replace(/\$\$|\$\{([^}]*)\}/g, (all, ref: string | undefined) => {
      if (all === "$$") return "$";
      const r = ref!;
      if (cache.has(r)) return cache.get(r)!;
      const val = raw[r] === undefined ? "" : expand(raw[r]!, depth + 1);
      cache.set(r, val);
      return val;
    });
  };
  const variables: Record<string, string> = {};
  for (const k of Object.keys(raw)) variables[k] = expand(raw[k]!, 0);
  const fields: Record<string, string> = {};
  for (const k of Object.keys(fieldsRaw)) fields[k] = expand(fieldsRaw[k]!, 0);
  const get = (k: string): string | undefined => {
    const key = Object.keys(fields).find((x) => x.toLowerCase() === k.toLowerCase());
    return key === undefined ? undefined : fields[key];
  };
  const version = get("Version")?.trim();
  return {
    name,
    ...(version ? { version } : {}),
    requires: splitModuleList(get("Requires") ?? ""),
    requiresPrivate: splitModuleList(get("Requires.private") ?? ""),
    variables,
    fields,
  };
}

/** pkg-config's module list: `a, b >= 1.2 c` → ["a", "b >= 1.2", "c"]. */
export function splitModuleList(s: string): string[] {
  const toks = s.match(/[<>!=]=?|[^\s,<>!=]+/g) ?? [];
  const out: string[] = [];
  for (let i = 0; i < toks.length; i++) {
    const name = toks[i]!;
    if (/^[<>!=]/.test(name)) continue; // a stray operator
    const op = toks[i + 1];
    const ver = toks[i + 2];
    if (op !== undefined && /^[<>!=]=?$/.test(op) && ver !== undefined && !/^[<>!=]/.test(ver)) {
      out.push(`${name} ${op} ${ver}`);
      i += 2;
    } else out.push(name);
  }
  return out;
}

/** A version apk accepts, from an upstream one (1.2.3-rc1 → 1.2.3_rc1), or undefined. */
export function toApkVersion(v: string): string | undefined {
  if (isValidVersion(v)) return v;
  const a = v
    .trim()
    .toLowerCase()
    .replace(/[-.~]?(alpha|beta|pre|rc)(\d*)/g, "_$1$2");
  if (isValidVersion(a)) return a;
  return undefined;
}

// ---------------------------------------------------------------------------
// Detection

export interface DetectOptions {
  /** The package's full version (e.g. 1.2.3-r0), used for `cmd:` provides. */
  version: string;
  /** Library directories whose SONAMEs are provided; default lib, usr/lib, lib64, usr/lib64 (plus multiarch subdirectories). */
  libDirs?: string[];
}

export interface DetectionDetails {
  elf: Array<{
    path: string;
    class: 32 | 64;
    endian: "le" | "be";
    type: number;
    machine: number;
    interp?: string;
    needed: string[];
    soname?: string;
    static: boolean;
  }>;
  sharedLibraries: Array<{ path: string; soname: string; provides?: string }>;
  commands: Array<{ path: string; name: string; viaSymlink?: string }>;
  scripts: Array<{ path: string; interpreter: string; command?: string }>;
  pkgconfig: Array<{ path: string; name: string; version?: string; requires: string[]; requiresPrivate: string[] }>;
  /** Names the package satisfies by its contents whatever the options: every SONAME and `.so` file name, every command, every pc name. */
  selfProvides: string[];
  /** token → the files that produced it. */
  reasons: Record<string, string[]>;
  warnings: string[];
}

export interface DetectedDependencies {
  depends: string[];
  provides: string[];
  details: DetectionDetails;
}

const DEFAULT_LIB_DIRS = ["lib", "usr/lib", "lib64", "usr/lib64"];
const BIN_DIRS = new Set(["bin", "sbin", "usr/bin", "usr/sbin"]);
const SCRIPT_DIRS = new Set(["bin", "sbin", "usr/bin", "usr/sbin"]);
const MULTIARCH = /^[a-z0-9_]+(?:-[a-z0-9_]+)*-linux(?:-[a-z0-9_]+)?$/;

function isLibDir(dir: string, libDirs: readonly string[]): boolean {
  if (libDirs.includes(dir)) return true;
  const parent = posix.dirname(dir);
  return libDirs.includes(parent) && MULTIARCH.test(posix.basename(dir));
}

function isPkgConfigDir(dir: string, libDirs: readonly string[]): boolean {
  if (posix.basename(dir) !== "pkgconfig") return false;
  const parent = posix.dirname(dir);
  return parent === "usr/share" || isLibDir(parent, libDirs);
}

function validToken(kind: "dep" | "provide", t: string): boolean {
  try {
    if (kind === "dep") parseDependency(t);
    else parseProvide(t);
    return true;
  } catch {
    return false;
  }
}

/** The apk ABI version of a SONAME: the part after ".so." (libz.so.1 → 1), "0" without one. */
export function sonameVersion(soname: string): string {
  const i = soname.indexOf(".so.");
  if (i < 0) return "0";
  const v = soname.slice(i + 4);
  return isValidVersion(v) ? v : "0";
}

interface WalkEntry {
  rel: string;
  kind: "file" | "symlink" | "other";
  mode: number;
  size: number;
}

async function walk(root: string): Promise<WalkEntry[]> {
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

/** `#!/usr/bin/env -S python3 -u` → "python3"; `#!/bin/bash -e` → "bash". */
export function shebangCommand(line: string): { interpreter: string; command: string } | undefined {
  const m = /^#!\s*(\S+)(.*)$/.exec(line);
  if (!m) return undefined;
  const interpreter = m[1]!;
  let command = posix.basename(interpreter);
  if (command === "env") {
    const args = m[2]!
      .trim()
      .split(/\s+/)
      .filter((a) => a !== "");
    const first = args.find((a) => !a.startsWith("-") && !a.includes("="));
    if (!first) return undefined;
    command = posix.basename(first);
  }
  return { interpreter, command };
}

/**
 * Scan a package's output directory for what it needs and provides:
 *  - ELF `PT_INTERP` → `so:<loader basename>`; `DT_NEEDED` → `so:<lib>`;
 *  - `DT_SONAME` of a library directly in lib, usr/lib, lib64, usr/lib64 or
 *    their multiarch subdirectory → `so:<soname>=<abi version>`;
 *  - an executable regular file (any x bit) in bin, sbin, usr/bin, usr/sbin →
 *    `cmd:<name>=<version>`; so is a symlink there whose target, resolved in
 *    the package, is such a file (symlinks are never read as files);
 *  - the `#!` interpreter of an executable script in those directories →
 *    `cmd:<basename>` (not for sh);
 *  - `.pc` files in (usr/)lib(64)[/multiarch]/pkgconfig and usr/share/pkgconfig
 *    → `pc:<name>=<Version>`, their Requires and Requires.private → `pc:<name>`
 *    with the version constraint when apk can express it.
 * Malformed ELF files and unparsable tokens are reported in details.warnings.
 */
export async function detectDependencies(dir: string, opts: DetectOptions): Promise<DetectedDependencies> {
  if (!isValidVersion(opts.version))
    throw new Error(`detectDependencies: ${JSON.stringify(opts.version)} is not a valid apk version`);
  const libDirs = opts.libDirs ?? DEFAULT_LIB_DIRS;
  const details: DetectionDetails = {
    elf: [],
    sharedLibraries: [],
    commands: [],
    scripts: [],
    pkgconfig: [],
    selfProvides: [],
    reasons: {},
    warnings: [],
  };
  const depends = new Set<string>();
  const provides = new Set<string>();
  const self = new Set<string>();
  const reason = (token: string, path: string): void => {
    (details.reasons[token] ??= []).push(path);
  };
  const addDep = (t: string, path: string): void => {
    if (!validToken("dep", t)) {
      details.warnings.push(`${path}: ignoring dependency ${JSON.stringify(t)}: not a valid apk dependency`);
      return;
    }
    depends.add(t);
    reason(t, path);
  };
  const addProvide = (t: string, path: string): void => {
    if (!validToken("provide", t)) {
      details.warnings.push(`${path}: ignoring provide ${JSON.stringify(t)}: not a valid apk provide`);
      return;
    }
    provides.add(t);
    reason(t, path);
  };

  const entries = await walk(dir);
  const byPath = new Map(entries.map((e) => [e.rel, e]));
  const cmdVersion = opts.version;

  for (const e of entries) {
    const parent = posix.dirname(e.rel);
    const base = posix.basename(e.rel);
    if (/\.so(\.|$)/.test(base) && (e.kind === "file" || e.kind === "symlink")) self.add(`so:${base}`);
    if (e.kind === "symlink") {
      if (BIN_DIRS.has(parent)) {
        const target = await fsp.readlink(join(dir, e.rel));
        const resolved = resolveInPackage(e.rel, target, byPath);
        if (resolved && resolved.kind === "file" && resolved.mode & 0o111) {
          details.commands.push({ path: e.rel, name: base, viaSymlink: resolved.rel });
          self.add(`cmd:${base}`);
          addProvide(`cmd:${base}=${cmdVersion}`, e.rel);
        }
      }
      continue;
    }
    if (e.kind !== "file") continue;
    if (e.rel.startsWith("usr/lib/debug/")) continue; // separated debug info: not loadable objects
    const abs = join(dir, e.rel);

    if (BIN_DIRS.has(parent) && e.mode & 0o111) {
      details.commands.push({ path: e.rel, name: base });
      self.add(`cmd:${base}`);
      addProvide(`cmd:${base}=${cmdVersion}`, e.rel);
    }

    if (base.endsWith(".pc") && isPkgConfigDir(parent, libDirs)) {
      const name = base.slice(0, -3);
      const pc = parsePkgConfig(await fsp.readFile(abs, "utf8"), name, "/" + parent);
      details.pkgconfig.push({
        path: e.rel,
        name,
        ...(pc.version ? { version: pc.version } : {}),
        requires: pc.requires,
        requiresPrivate: pc.requiresPrivate,
      });
      self.add(`pc:${name}`);
      const v = pc.version ? toApkVersion(pc.version) : undefined;
      if (pc.version && !v)
        details.warnings.push(
          `${e.rel}: Version ${JSON.stringify(pc.version)} is not an apk version; providing pc:${name} without a version`,
        );
      addProvide(v ? `pc:${name}=${v}` : `pc:${name}`, e.rel);
      for (const req of [...pc.requires, ...pc.requiresPrivate]) {
        const [rname, op, rver] = req.split(" ");
        let tok = `pc:${rname}`;
        if (op && rver) {
          const av = toApkVersion(rver);
          if (av && ["=", "<", ">", "<=", ">="].includes(op)) tok += `${op}${av}`;
          else
            details.warnings.push(
              `${e.rel}: dropping the constraint of ${JSON.stringify(req)} (not expressible in apk)`,
            );
        }
        addDep(tok, e.rel);
      }
      continue;
    }

    if (e.size < 4) continue;
    const head = await readHead(abs, 256);
    if (head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46) {
      let elf: ElfInfo | null;
      try {
        elf = await readElf(abs);
      } catch (err) {
        details.warnings.push(err instanceof ElfError ? err.message : `${e.rel}: ${(err as Error).message}`);
        continue;
      }
      if (!elf || (elf.type !== 2 && elf.type !== 3)) continue; // relocatable objects, core files
      details.elf.push({
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
      if (elf.interp) addDep(`so:${posix.basename(elf.interp)}`, e.rel);
      for (const lib of elf.needed) addDep(`so:${lib}`, e.rel);
      if (elf.soname) {
        self.add(`so:${elf.soname}`);
        const lib: DetectionDetails["sharedLibraries"][number] = { path: e.rel, soname: elf.soname };
        if (isLibDir(parent, libDirs)) {
          lib.provides = `so:${elf.soname}=${sonameVersion(elf.soname)}`;
          addProvide(lib.provides, e.rel);
        }
        details.sharedLibraries.push(lib);
      }
      continue;
    }
    if (head[0] === 0x23 && head[1] === 0x21 && SCRIPT_DIRS.has(parent) && e.mode & 0o111) {
      const nl = head.indexOf(0x0a);
      const line = head.subarray(0, nl < 0 ? head.length : nl).toString("utf8");
      const sb = shebangCommand(line);
      if (!sb) {
        details.warnings.push(`${e.rel}: cannot read the interpreter from ${JSON.stringify(line)}`);
        continue;
      }
      const script: DetectionDetails["scripts"][number] = { path: e.rel, interpreter: sb.interpreter };
      if (sb.command !== "sh") {
        script.command = sb.command;
        addDep(`cmd:${sb.command}`, e.rel);
      }
      details.scripts.push(script);
    }
  }
  details.selfProvides = [...self].filter((t) => validToken("provide", t)).sort();
  return { depends: [...depends].sort(), provides: [...provides].sort(), details };
}

/** Resolve a symlink one step, lexically, inside the package (absolute targets from the package root); undefined if the target is not in the package. */
function resolveInPackage(linkRel: string, target: string, byPath: Map<string, WalkEntry>): WalkEntry | undefined {
  const abs = target.startsWith("/")
    ? posix.normalize(target)
    : posix.normalize(posix.join("/", posix.dirname(linkRel), target));
  return byPath.get(abs.replace(/^\/+/, ""));
}

// ---------------------------------------------------------------------------
// Merging

export interface MergeInput {
  declared: { runtime?: readonly string[]; provides?: readonly string[] };
  detected: { depends: readonly string[]; provides: readonly string[]; details?: { selfProvides?: readonly string[] } };
  options?: { noProvides?: boolean; noDepends?: boolean; noCommands?: boolean };
  /** Names/provides the package satisfies by itself (default: detected.details.selfProvides). */
  selfProvides?: readonly string[];
  /** The package's own name and version: a dependency on itself is dropped. */
  packageName?: string;
  packageVersion?: string;
}

/**
 * Merge declared and detected dependencies as melange does: detected depends
 * unless noDepends, detected provides unless noProvides (and no `cmd:` ones
 * with noCommands); declared ones always. The result is sorted and
 * de-duplicated; a provide declared by the recipe wins over a detected one of
 * the same name; a bare dependency is dropped when the same name also has a
 * constrained one; and dependencies the package satisfies itself (its own
 * provides, its SONAMEs and `.so` files, commands, pc files) are removed.
 * Conflicts (`!name`) are kept as declared.
 */
export function mergeDependencies(input: MergeInput): { depends: string[]; provides: string[] } {
  const opts = input.options ?? {};
  const declaredProvides = [...(input.declared.provides ?? [])];
  const declaredNames = new Set(declaredProvides.map((p) => parseProvide(p).name));
  let detProvides = opts.noProvides ? [] : [...input.detected.provides];
  if (opts.noCommands) detProvides = detProvides.filter((p) => !p.startsWith("cmd:"));
  detProvides = detProvides.filter((p) => !declaredNames.has(parseProvide(p).name));
  const provides = [...new Set([...declaredProvides, ...detProvides])].sort();

  const self = [
    ...new Set([
      ...(input.selfProvides ?? input.detected.details?.selfProvides ?? []),
      ...input.detected.provides,
      ...provides,
    ]),
  ].filter((t) => validToken("provide", t));
  const version =
    input.packageVersion !== undefined && isValidVersion(input.packageVersion) ? input.packageVersion : "0";
  const me = { name: input.packageName ?? "", version, provides: self };

  const all = [...(input.declared.runtime ?? []), ...(opts.noDepends ? [] : input.detected.depends)];
  const parsed = new Map<string, Dependency>();
  for (const t of all) parsed.set(t, parseDependency(t));
  const constrained = new Set([...parsed.values()].filter((d) => !d.conflict && d.op !== undefined).map((d) => d.name));
  const depends = [...parsed.entries()]
    .filter(([, d]) => {
      if (d.conflict) return true;
      if (d.op === undefined && constrained.has(d.name)) return false;
      return !selfSatisfies(me, d);
    })
    .map(([t]) => t)
    .sort();
  return { depends: [...new Set(depends)], provides };
}

function selfSatisfies(me: { name: string; version: string; provides: readonly string[] }, d: Dependency): boolean {
  return packageSatisfies(me, d);
}
