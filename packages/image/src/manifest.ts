// Package manifests: what installing a package put into an image root,
// enough to install it again without the package (ImageRoot's
// installFromManifest), and the checks a manifest's entries get before they
// are installed as a package's would be.

import { assertPathComponent, UnsafePathError } from "@kiln/core";
import { normalizeEntryPath, type DataEntry, type IndexRecord, type InstalledDir } from "@kiln/apk";
import { InstallError } from "./root.js";

/** One data entry of a package as a manifest keeps it: everything but the content, which is named by SHA-1 (and SHA-256). */
export interface ManifestEntry {
  path: string;
  type: DataEntry["type"];
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  sha1?: string;
  /** A regular file's SHA-256, once known (the content store's name for it). */
  sha256?: string;
  /** xattrs, values base64. */
  xattrs?: Record<string, string>;
}

/**
 * What installing a package put in the root, enough to install it again
 * without reading the package (installFromManifest): its identity (C:), the
 * .PKGINFO fields installing uses, its install scripts, and its data entries.
 */
export interface PackageManifest extends Omit<InstallHead, "scripts"> {
  version: 1;
  /** Install scripts, bodies base64. */
  scripts: Array<{ name: string; body: string }>;
  entries: ManifestEntry[];
}

export const SCRIPT_RE = /^\.(pre|post)-(install|upgrade|deinstall)$|^\.trigger$/;

export function manifestEntry(e: DataEntry): ManifestEntry {
  const m: ManifestEntry = { path: e.path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, size: e.size };
  if (e.linkTarget !== undefined) m.linkTarget = e.linkTarget;
  if (e.devMajor !== undefined) m.devMajor = e.devMajor;
  if (e.devMinor !== undefined) m.devMinor = e.devMinor;
  if (e.sha1 !== undefined) m.sha1 = e.sha1;
  const x = Object.entries(e.xattrs);
  if (x.length) m.xattrs = Object.fromEntries(x.map(([k, v]) => [k, v.toString("base64")]));
  return m;
}

/** `name-version` of a record whose name and version are safe in apk's database and scripts.tar names. */
export function checkedLabel(rec: IndexRecord): string {
  const label = `${rec.name}-${rec.version}`;
  try {
    assertPathComponent(rec.name, "package name");
    assertPathComponent(rec.version, `version of ${rec.name}`);
  } catch (e) {
    if (e instanceof UnsafePathError)
      throw new InstallError(`refusing to install ${JSON.stringify(label)}: ${e.message}`, "UNSAFE_NAME");
    throw e;
  }
  return label;
}

const MANIFEST_TYPES = new Set(["file", "dir", "symlink", "hardlink", "char", "block", "fifo"]);

/** A manifest entry as the DataEntry installEntry takes, checked as a package's entry is (normal path, known type, a SHA-1 for files). */
export function replayEntry(m: ManifestEntry, label: string): DataEntry {
  const bad = (why: string) =>
    new InstallError(`${label}: manifest entry ${JSON.stringify(m.path)}: ${why}`, "BAD_PACKAGE");
  if (typeof m.path !== "string" || normalizeEntryPath(m.path, label) !== m.path) throw bad("not a normal path");
  if (!MANIFEST_TYPES.has(m.type)) throw bad(`unknown type ${String(m.type)}`);
  for (const n of [m.mode, m.uid, m.gid, m.size]) if (!Number.isSafeInteger(n) || n < 0) throw bad("bad number");
  if (m.type === "file" && !/^[0-9a-f]{40}$/.test(m.sha1 ?? "")) throw bad("no SHA-1");
  if ((m.type === "symlink" || m.type === "hardlink") && typeof m.linkTarget !== "string") throw bad("no link target");
  const e: DataEntry = {
    path: m.path,
    type: m.type,
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
    uname: "",
    gname: "",
    size: m.size,
    mtime: 0,
    xattrs: Object.fromEntries(Object.entries(m.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64")])),
    pax: {},
    content: () => {
      throw bad("content is not in a manifest");
    },
  };
  if (m.linkTarget !== undefined) e.linkTarget = m.linkTarget;
  if (m.devMajor !== undefined) e.devMajor = m.devMajor;
  if (m.devMinor !== undefined) e.devMinor = m.devMinor;
  if (m.sha1 !== undefined) e.sha1 = m.sha1;
  return e;
}

/** What installing needs of a package besides its entries, from its head or from a manifest. */
export interface InstallHead {
  checksum: string;
  origin?: string;
  installedSize?: number;
  replaces: string[];
  replacesPriority?: number;
  triggers: string[];
  scripts: Array<{ name: string; body: Buffer }>;
}

/** The directories of one package's entry in apk's database, in the order first named, with their files. */
export function dbDirs(): { dirs: InstalledDir[]; dir: (path: string) => InstalledDir } {
  const dirs: InstalledDir[] = [];
  const index = new Map<string, InstalledDir>();
  const dir = (path: string) => {
    let d = index.get(path);
    if (!d) {
      d = { path, files: [], extra: [] };
      index.set(path, d);
      dirs.push(d);
    }
    return d;
  };
  return { dirs, dir };
}
