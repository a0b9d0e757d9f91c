// What the generators of dependency detection share: the options, the
// details they report, the file they are shown, and the context they add
// their tokens to.

import { isValidVersion, parseDependency, parseProvide } from "@kiln/apk";
import { posix } from "node:path";
import type { ElfInfo } from "./elf.js";

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

export interface WalkEntry {
  rel: string;
  kind: "file" | "symlink" | "other";
  mode: number;
  size: number;
}

/**
 * One file of the package as the generators see it. `category` is decided
 * once by the driver, in this order: a symlink; a file under usr/lib/debug
 * (separated debug info, not a loadable object); a `.pc` file in a
 * pkg-config directory; a loadable ELF object (executable or shared, `elf`
 * set); an executable `#!` script in a bin directory (`shebang` set); any
 * other file.
 */
export interface ScaFile {
  entry: WalkEntry;
  /** Path relative to the package root, `usr/bin/x`. */
  rel: string;
  /** `posix.dirname(rel)` */
  parent: string;
  /** `posix.basename(rel)` */
  base: string;
  /** Absolute path on disk. */
  abs: string;
  category: "symlink" | "debug" | "pkgconfig" | "elf" | "script" | "other";
  elf?: ElfInfo;
  /** The script's first line. */
  shebang?: string;
}

export interface ScaContext {
  /** The package's output directory. */
  dir: string;
  version: string;
  libDirs: readonly string[];
  /** Every walked entry by relative path (for resolving symlinks inside the package). */
  byPath: ReadonlyMap<string, WalkEntry>;
  details: DetectionDetails;
  addDepend(token: string, path: string): void;
  addProvide(token: string, path: string): void;
  /** A name the package satisfies by its contents, whatever the options. */
  addSelf(token: string): void;
}

/** One generator: looks at each file in turn and adds what it finds. */
export interface Generator {
  name: string;
  visit(file: ScaFile, ctx: ScaContext): void | Promise<void>;
}

export const DEFAULT_LIB_DIRS = ["lib", "usr/lib", "lib64", "usr/lib64"];
export const BIN_DIRS: ReadonlySet<string> = new Set(["bin", "sbin", "usr/bin", "usr/sbin"]);
export const SCRIPT_DIRS: ReadonlySet<string> = new Set(["bin", "sbin", "usr/bin", "usr/sbin"]);
const MULTIARCH = /^[a-z0-9_]+(?:-[a-z0-9_]+)*-linux(?:-[a-z0-9_]+)?$/;

export function isLibDir(dir: string, libDirs: readonly string[]): boolean {
  if (libDirs.includes(dir)) return true;
  const parent = posix.dirname(dir);
  return libDirs.includes(parent) && MULTIARCH.test(posix.basename(dir));
}

export function isPkgConfigDir(dir: string, libDirs: readonly string[]): boolean {
  if (posix.basename(dir) !== "pkgconfig") return false;
  const parent = posix.dirname(dir);
  return parent === "usr/share" || isLibDir(parent, libDirs);
}

export function validToken(kind: "dep" | "provide", t: string): boolean {
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
