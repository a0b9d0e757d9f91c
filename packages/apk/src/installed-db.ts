// The installed database (`lib/apk/db/installed`) and the client configuration
// files beside it (`etc/apk/world`, `etc/apk/repositories`).
//
// A package block is the index fields, then instance fields (`r:` `q:` `s:`
// `f:`), then per directory `F:` (+ `M:`) and per file `R:` (+ `a:`, `Z:`).
// apk-tools and apko both write this file, in different header orders and with
// different octal widths; both must survive parse → format unchanged, because
// rewriting an image's database should not churn entries nobody touched.

import { ApkError } from "./errors.js";
import {
  applyIndexField,
  formatIndexFields,
  INDEX_FIELD_ORDER,
  newIndexRecord,
  type IndexRecord,
} from "./index-text.js";

export interface InstalledFile {
  name: string;
  /** Absent means root (0). */
  uid?: number;
  gid?: number;
  /** Permission bits; absent means 0644. */
  mode?: number;
  /** The `Z:` value, e.g. `Q1` + base64 SHA-1 of the content (or of the link target). */
  checksum?: string;
  /** Checksum of the extended attributes: the optional fourth field of `a:`. */
  xattrChecksum?: string;
  /**
   * The `a:` value as read, kept only when this library would have written the
   * same values differently (apk-tools writes `777`, apko `0777`). Used on output
   * while it still denotes the current uid/gid/mode/xattrChecksum.
   */
  aclText?: string;
  /** Lines under this file that are not interpreted, in file order. */
  extra: Array<[string, string]>;
}

export interface InstalledDir {
  /** Relative to the root, no leading or trailing slash; "" is the root itself. */
  path: string;
  uid?: number;
  gid?: number;
  /** Permission bits; absent means 0755. */
  mode?: number;
  /** Checksum of the extended attributes: the optional fourth field of `M:`. */
  xattrChecksum?: string;
  /** The `M:` value as read; see {@link InstalledFile.aclText}. */
  aclText?: string;
  files: InstalledFile[];
  /** Lines under `F:` before its first `R:` that are not interpreted. */
  extra: Array<[string, string]>;
}

export interface InstalledPackage {
  /** Index fields; `r:` lands in `record.replaces`. */
  record: IndexRecord;
  /** `q:`. When absent, `record.replacesPriority` (e.g. from `.PKGINFO`) is written instead. */
  replacesPriority?: number;
  dirs: InstalledDir[];
  /**
   * Package-level lines not interpreted (`s:` repository tag, `f:` broken-state
   * flags, unknown uppercase fields), in file order. Unknown lowercase fields
   * go to `record.unknownFields`, as they would in an APKINDEX.
   */
  extra: Array<[string, string]>;
  /**
   * Keys of the header lines in the order they were read, set by the parser only
   * when that order (or an empty `D:` `p:` `i:` `r:` `V:` `A:` line) differs from what
   * {@link formatInstalledDb} writes by default. Fields not listed are appended
   * in the default order, so edits to a parsed package still come out.
   */
  headerOrder?: string[];
}

const DEFAULT_SUBJECT = "lib/apk/db/installed";

const DEFAULT_DIR_MODE = 0o755;
const DEFAULT_FILE_MODE = 0o644;

const INDEX_KEYS = new Set<string>(INDEX_FIELD_ORDER);
// Instance fields apk keeps per installation but this library only carries.
const PACKAGE_LEVEL_EXTRA = new Set(["s", "f"]);
const STRUCTURAL = new Set(["F", "M", "R", "a", "Z", "r", "q"]);
// Fields whose empty value the record cannot tell from absence (empty lists, and
// the "" that newIndexRecord starts V and A with): written only when remembered.
const EMPTY_MEANS_ABSENT = new Set(["D", "p", "i", "r", "V", "A"]);

function fail(message: string, subject: string): never {
  throw new ApkError("INVALID_FIELD", message, { subject });
}

interface Acl {
  uid: number;
  gid: number;
  mode: number;
  xattrChecksum?: string;
}

function parseAcl(value: string, where: string, key: string, subject: string): Acl {
  const parts = value.split(":");
  if (parts.length < 3 || parts.length > 4) {
    fail(`${where}: ${key}: must be uid:gid:mode[:xattr-checksum], got ${JSON.stringify(value)}`, subject);
  }
  const [uid, gid, mode, xattr] = parts as [string, string, string, string | undefined];
  for (const [what, v] of [
    ["uid", uid],
    ["gid", gid],
  ] as const) {
    if (!/^\d{1,10}$/.test(v) || Number(v) > 0xffffffff) {
      fail(`${where}: ${key}: ${what} must be a whole number, got ${JSON.stringify(v)}`, subject);
    }
  }
  // apk masks modes to the permission bits, so anything wider is not a mode it wrote.
  if (!/^[0-7]{1,6}$/.test(mode) || parseInt(mode, 8) > 0o7777) {
    fail(`${where}: ${key}: bad octal mode ${JSON.stringify(mode)}`, subject);
  }
  if (xattr === "") fail(`${where}: ${key}: empty xattr checksum`, subject);
  const acl: Acl = { uid: Number(uid), gid: Number(gid), mode: parseInt(mode, 8) };
  if (xattr !== undefined) acl.xattrChecksum = xattr;
  return acl;
}

function aclOf(x: InstalledFile | InstalledDir, defaultMode: number): Acl {
  const acl: Acl = { uid: x.uid ?? 0, gid: x.gid ?? 0, mode: x.mode ?? defaultMode };
  if (x.xattrChecksum !== undefined) acl.xattrChecksum = x.xattrChecksum;
  return acl;
}

function sameAcl(a: Acl, b: Acl): boolean {
  return a.uid === b.uid && a.gid === b.gid && a.mode === b.mode && a.xattrChecksum === b.xattrChecksum;
}

/** What the canonical writer emits for an ACL, or undefined when it is the default. */
function canonicalAclText(acl: Acl, defaultMode: number): string | undefined {
  if (acl.uid === 0 && acl.gid === 0 && acl.mode === defaultMode && acl.xattrChecksum === undefined) return undefined;
  let s = `${acl.uid}:${acl.gid}:${acl.mode.toString(8).padStart(4, "0")}`;
  if (acl.xattrChecksum !== undefined) s += `:${acl.xattrChecksum}`;
  return s;
}

function applyAcl(target: InstalledFile | InstalledDir, acl: Acl, raw: string, defaultMode: number) {
  target.uid = acl.uid;
  target.gid = acl.gid;
  target.mode = acl.mode;
  if (acl.xattrChecksum !== undefined) target.xattrChecksum = acl.xattrChecksum;
  else delete target.xattrChecksum;
  if (canonicalAclText(acl, defaultMode) !== raw) target.aclText = raw;
  else delete target.aclText;
}

/** Parse the installed database. `subject` names the file in error messages. */
export function parseInstalledDb(text: string, subject = DEFAULT_SUBJECT): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  let pkg: InstalledPackage | undefined;
  let pkgLine = 0;
  let headerLines: string[] = [];
  let dir: InstalledDir | undefined;
  let file: InstalledFile | undefined;

  const finish = () => {
    if (!pkg) return;
    out.push(finishPackage(pkg, pkgLine, headerLines, subject));
    pkg = undefined;
    dir = undefined;
    file = undefined;
  };

  const lines = text.split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === "") {
      finish();
      continue;
    }
    const where = `${subject}:${i + 1}`;
    if (line.length < 2 || line[1] !== ":") {
      fail(`${where}: expected "X:value", got ${JSON.stringify(line.slice(0, 80))}`, subject);
    }
    if (!pkg) {
      pkg = { record: newIndexRecord(), dirs: [], extra: [] };
      pkgLine = i + 1;
      headerLines = [];
    }
    const key = line[0]!;
    const value = line.slice(2);
    switch (key) {
      case "F":
        dir = { path: value, files: [], extra: [] };
        pkg.dirs.push(dir);
        file = undefined;
        continue;
      case "M":
        if (!dir) fail(`${where}: M: before any F:`, subject);
        applyAcl(dir, parseAcl(value, where, key, subject), value, DEFAULT_DIR_MODE);
        continue;
      case "R":
        if (!dir) fail(`${where}: R: before any F:`, subject);
        file = { name: value, extra: [] };
        dir.files.push(file);
        continue;
      case "a":
        if (!file) fail(`${where}: a: before any R: in this directory`, subject);
        applyAcl(file, parseAcl(value, where, key, subject), value, DEFAULT_FILE_MODE);
        continue;
      case "Z":
        if (!file) fail(`${where}: Z: before any R: in this directory`, subject);
        file.checksum = value;
        continue;
      case "r":
        pkg.record.replaces = value.split(" ").filter((s) => s !== "");
        break;
      case "q":
        if (!/^\d+$/.test(value)) fail(`${where}: q: must be a whole number, got ${JSON.stringify(value)}`, subject);
        pkg.replacesPriority = Number(value);
        break;
      default:
        if (applyOtherLine(pkg, dir, file, key, value, where)) break;
        continue;
    }
    headerLines.push(line);
  }
  finish();
  return out;
}

/** Check a parsed package's P: line and keep its header order if it is not the canonical one. */
function finishPackage(
  pkg: InstalledPackage,
  pkgLine: number,
  headerLines: string[],
  subject: string,
): InstalledPackage {
  if (!pkg.record.name) fail(`${subject}:${pkgLine}: package has no P: line`, subject);
  const canonical = headerEntries({ ...pkg, headerOrder: undefined }).map(([, line]) => line);
  if (canonical.length !== headerLines.length || canonical.some((l, i) => l !== headerLines[i])) {
    pkg.headerOrder = headerLines.map((l) => l[0]!);
  }
  return pkg;
}

/**
 * Record a line that is not F:, M:, R:, a:, Z:, r: or q:. Returns true when it
 * belongs to the package header, false when it went to a file or directory.
 */
function applyOtherLine(
  pkg: InstalledPackage,
  dir: InstalledDir | undefined,
  file: InstalledFile | undefined,
  key: string,
  value: string,
  where: string,
): boolean {
  if (applyIndexField(pkg.record, key, value, where)) return true;
  if (PACKAGE_LEVEL_EXTRA.has(key)) {
    pkg.extra.push([key, value]);
    return true;
  }
  // Unknown lines stay with the file or directory they were written under.
  if (file) {
    file.extra.push([key, value]);
    return false;
  }
  if (dir) {
    dir.extra.push([key, value]);
    return false;
  }
  if (key >= "a" && key <= "z") pkg.record.unknownFields.push([key, value]);
  else pkg.extra.push([key, value]);
  return true;
}

function checkValue(what: string, value: string) {
  if (value.includes("\n")) fail(`installed db: ${what} must not contain a newline`, what);
}

function checkExtra(extra: ReadonlyArray<[string, string]>, level: "package" | "dir" | "file") {
  for (const [k, v] of extra) {
    const reserved = INDEX_KEYS.has(k) || STRUCTURAL.has(k) || (level !== "package" && PACKAGE_LEVEL_EXTRA.has(k));
    if (k.length !== 1 || k === "\n" || reserved) {
      fail(`installed db: ${JSON.stringify(k)} cannot be an extra ${level} field`, k);
    }
    checkValue(`${k}:`, v);
  }
}

/** Header lines with their keys, in the remembered order when there is one. */
function headerEntries(pkg: InstalledPackage): Array<[string, string]> {
  const rec = pkg.record;
  if (!rec.name) fail("installed db: package has no name", "P");
  const canonical: Array<[string, string]> = formatIndexFields(rec)
    .filter((l) => !(l.length === 2 && EMPTY_MEANS_ABSENT.has(l[0]!)))
    .map((l) => [l[0]!, l]);
  if (rec.replaces.length) {
    const r = rec.replaces.join(" ");
    checkValue("r:", r);
    canonical.push(["r", `r:${r}`]);
  }
  const prio = pkg.replacesPriority ?? rec.replacesPriority;
  if (prio !== undefined) {
    if (!Number.isSafeInteger(prio) || prio < 0) fail(`installed db: q: must be a whole number, got ${prio}`, "q");
    canonical.push(["q", `q:${prio}`]);
  }
  checkExtra(pkg.extra, "package");
  for (const [k, v] of pkg.extra) canonical.push([k, `${k}:${v}`]);
  if (!pkg.headerOrder) return canonical;

  const pending = new Map<string, string[]>();
  for (const [k, line] of canonical) {
    const queue = pending.get(k);
    if (queue) queue.push(line);
    else pending.set(k, [line]);
  }
  const out: Array<[string, string]> = [];
  const seen = new Set<string>();
  for (const k of pkg.headerOrder) {
    const line = pending.get(k)?.shift();
    if (line !== undefined) out.push([k, line]);
    else if (EMPTY_MEANS_ABSENT.has(k) && !seen.has(k)) out.push([k, `${k}:`]);
    seen.add(k);
  }
  for (const [k] of canonical) {
    const line = pending.get(k)?.shift();
    if (line !== undefined) out.push([k, line]);
  }
  return out;
}

function aclLine(out: string[], key: "M" | "a", x: InstalledFile | InstalledDir, defaultMode: number) {
  const acl = aclOf(x, defaultMode);
  if (!Number.isInteger(acl.mode) || acl.mode < 0 || acl.mode > 0o7777)
    fail(`installed db: ${key}: bad mode ${acl.mode}`, key);
  for (const n of [acl.uid, acl.gid]) {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) fail(`installed db: ${key}: bad uid/gid ${n}`, key);
  }
  if (acl.xattrChecksum !== undefined && (acl.xattrChecksum === "" || /[:\n]/.test(acl.xattrChecksum))) {
    fail(`installed db: ${key}: bad xattr checksum ${JSON.stringify(acl.xattrChecksum)}`, key);
  }
  if (x.aclText !== undefined) {
    let remembered: Acl | undefined;
    try {
      remembered = parseAcl(x.aclText, "aclText", key, key);
    } catch {
      remembered = undefined;
    }
    if (remembered && sameAcl(remembered, acl)) {
      out.push(`${key}:${x.aclText}`);
      return;
    }
  }
  const text = canonicalAclText(acl, defaultMode);
  if (text !== undefined) out.push(`${key}:${text}`);
}

function packageLines(pkg: InstalledPackage): string[] {
  const out = headerEntries(pkg).map(([, line]) => line);
  for (const dir of pkg.dirs) {
    checkValue("F:", dir.path);
    out.push(`F:${dir.path}`);
    aclLine(out, "M", dir, DEFAULT_DIR_MODE);
    checkExtra(dir.extra, "dir");
    for (const [k, v] of dir.extra) out.push(`${k}:${v}`);
    for (const f of dir.files) {
      if (f.name === "" || f.name.includes("/"))
        fail(`installed db: bad file name ${JSON.stringify(f.name)} in ${JSON.stringify(dir.path)}`, f.name);
      checkValue("R:", f.name);
      out.push(`R:${f.name}`);
      aclLine(out, "a", f, DEFAULT_FILE_MODE);
      if (f.checksum !== undefined) {
        checkValue("Z:", f.checksum);
        out.push(`Z:${f.checksum}`);
      }
      checkExtra(f.extra, "file");
      for (const [k, v] of f.extra) out.push(`${k}:${v}`);
    }
  }
  return out;
}

/** Serialize packages in the order given; apk sorts by name, see {@link sortInstalled}. */
export function formatInstalledDb(pkgs: readonly InstalledPackage[]): string {
  let s = "";
  for (const p of pkgs) s += packageLines(p).join("\n") + "\n\n";
  return s;
}

/** A copy sorted by package name in byte order, as apk-tools writes the database. */
export function sortInstalled(pkgs: readonly InstalledPackage[]): InstalledPackage[] {
  return [...pkgs].sort((a, b) => (a.record.name < b.record.name ? -1 : a.record.name > b.record.name ? 1 : 0));
}

/** Paths of the files a package owns, relative to the root. */
export function installedFilePaths(pkg: InstalledPackage): string[] {
  const out: string[] = [];
  for (const d of pkg.dirs) {
    for (const f of d.files) out.push(d.path === "" ? f.name : `${d.path}/${f.name}`);
  }
  return out;
}

/** `etc/apk/world`. apk splits on any whitespace, so space-separated files read too. */
export function parseWorld(text: string): string[] {
  return text.split(/\s+/).filter((s) => s !== "");
}

/** `etc/apk/world`: sorted, unique, one dependency a line. */
export function formatWorld(deps: readonly string[]): string {
  for (const d of deps) {
    if (d === "" || /\s/.test(d)) fail(`world: bad dependency ${JSON.stringify(d)}`, "etc/apk/world");
  }
  const unique = [...new Set(deps)].sort();
  return unique.map((d) => d + "\n").join("");
}

export interface Repository {
  /** Without the `@`; dependencies written `name@tag` only resolve from tagged repositories. */
  tag?: string;
  url: string;
}

/** `etc/apk/repositories`: one URL a line, optional `@tag ` prefix; `#` lines are comments. */
export function parseRepositories(text: string, subject = "etc/apk/repositories"): Repository[] {
  const out: Repository[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (!line.startsWith("@")) {
      out.push({ url: line });
      continue;
    }
    const m = /^@(\S+)\s+(\S.*)$/.exec(line);
    if (!m) fail(`${subject}:${i + 1}: expected "@tag URL", got ${JSON.stringify(line.slice(0, 80))}`, subject);
    out.push({ tag: m[1]!, url: m[2]! });
  }
  return out;
}

export function formatRepositories(repos: readonly Repository[]): string {
  let s = "";
  for (const r of repos) {
    if (r.url === "" || /\s/.test(r.url) || r.url.startsWith("#") || r.url.startsWith("@")) {
      fail(`repositories: bad URL ${JSON.stringify(r.url)}`, "etc/apk/repositories");
    }
    if (r.tag !== undefined) {
      if (r.tag === "" || /[\s@]/.test(r.tag))
        fail(`repositories: bad tag ${JSON.stringify(r.tag)}`, "etc/apk/repositories");
      s += `@${r.tag} `;
    }
    s += r.url + "\n";
  }
  return s;
}
