// Writing a signed `.apk`. The data member is written first (to a temporary
// file beside the output, hashed as it goes) because the control member must
// carry its datahash; then signature + control + data are joined and renamed
// into place, so no half-written package is ever visible under the final name.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, open, readdir, readlink, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { replaceAtomic, tempPathFor } from "@kiln/core/base";
import { ApkError } from "./errors.js";
import { gzipMember } from "./gzip.js";
import type { SigningKey, SignatureType } from "./keys.js";
import { checkSymlinkTarget, normalizeEntryPath, parentDir } from "./paths.js";
import { formatPkgInfo, parsePkgInfo, type PackageInfo } from "./pkginfo.js";
import { parallelGzip } from "./pgzip.js";
import type { IndexRecord } from "./index-text.js";
import { identityOf, SCRIPT_NAMES } from "./package-read.js";
import { buildSignatureMember } from "./signature.js";
import { encodeHeader, padding, ZERO_BLOCK, type EntryType } from "./tar.js";
import { validateDependencyList, validateProvideList } from "./dependency.js";
import { isValidVersion } from "./version.js";

export type ScriptName = (typeof SCRIPT_NAMES)[number];

export interface EntrySpec {
  path: string;
  type: EntryType;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, Uint8Array>;
  /** Regular-file content: bytes, or a file on disk read when written. */
  content?: Uint8Array | string | { file: string };
}

export interface WritePackageOptions {
  /** Metadata; `installedSize` is computed when absent, `dataHash` always. */
  info: PackageInfo;
  entries: readonly EntrySpec[];
  scripts?: Partial<Record<ScriptName, string | Uint8Array>>;
  /** Other control dot-files, e.g. `.melange.yaml`. */
  controlFiles?: Record<string, string | Uint8Array>;
  signingKeys?: SigningKey[];
  signatureType?: SignatureType;
  sourceDateEpoch?: number;
  gzipLevel?: number;
}

export interface WrittenPackage {
  path: string;
  info: PackageInfo;
  /** `C:` identity. */
  checksum: string;
  /** Final file size (`S:`). */
  size: number;
  /** Its index record, as reading the file back gives it (from the .PKGINFO written, so without reading the file). */
  record: IndexRecord;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9+_.-]*$/;

export function validatePackageInfo(info: PackageInfo, where = "package"): void {
  if (!NAME_RE.test(info.name))
    throw new ApkError(
      "INVALID_FIELD",
      `${where}: invalid package name ${JSON.stringify(info.name)} (expected letters, digits, + _ . -)`,
      { subject: "name" },
    );
  if (!isValidVersion(info.version))
    throw new ApkError("INVALID_VERSION", `${where}: invalid version ${JSON.stringify(info.version)}`, {
      subject: "version",
    });
  if (!/^[a-z0-9_]+$/.test(info.arch))
    throw new ApkError("INVALID_FIELD", `${where}: invalid arch ${JSON.stringify(info.arch)}`, { subject: "arch" });
  validateDependencyList(info.depends, `${where} depends`);
  validateProvideList(info.provides, `${where} provides`);
  validateDependencyList(info.installIf, `${where} install_if`);
  validateDependencyList(info.replaces, `${where} replaces`);
}

interface PlannedEntry extends EntrySpec {
  mode: number;
  uid: number;
  gid: number;
}

/** Sort, validate, add missing parent directories, and order hard links after their target. */
export function planEntries(entries: readonly EntrySpec[], subject = "package"): PlannedEntry[] {
  const byPath = new Map<string, PlannedEntry>();
  for (const e of entries) {
    const path = normalizeEntryPath(e.path, subject);
    if (path === "") continue;
    if (byPath.has(path)) throw new ApkError("INVALID_FIELD", `${subject}: duplicate entry ${path}`, { subject: path });
    const mode = e.mode ?? (e.type === "dir" ? 0o755 : e.type === "symlink" ? 0o777 : 0o644);
    byPath.set(path, { ...e, path, mode, uid: e.uid ?? 0, gid: e.gid ?? 0 });
  }
  for (const path of [...byPath.keys()]) {
    for (let p = parentDir(path); p !== ""; p = parentDir(p)) {
      const existing = byPath.get(p);
      if (existing) {
        if (existing.type !== "dir")
          throw new ApkError("INVALID_FIELD", `${subject}: ${p} is a ${existing.type} but ${path} is inside it`, {
            subject: p,
          });
        break;
      }
      byPath.set(p, { path: p, type: "dir", mode: 0o755, uid: 0, gid: 0 });
    }
  }
  // Hard links: the first path in output order carries the content.
  const groups = new Map<string, string[]>();
  for (const e of byPath.values()) {
    if (e.type !== "hardlink") continue;
    const t = normalizeEntryPath(e.linkTarget ?? "", subject);
    const target = byPath.get(t);
    if (!target || (target.type !== "file" && target.type !== "hardlink")) {
      throw new ApkError(
        "INVALID_FIELD",
        `${subject}: hard link ${e.path} -> ${e.linkTarget} does not name a regular file of this package`,
        { subject: e.path },
      );
    }
    if (target.type === "hardlink")
      throw new ApkError("INVALID_FIELD", `${subject}: hard link ${e.path} points at another hard link`, {
        subject: e.path,
      });
    (groups.get(t) ?? groups.set(t, [t]).get(t)!).push(e.path);
  }
  for (const [t, members] of groups) {
    members.sort(comparePaths);
    const first = members[0]!;
    if (first !== t) {
      const src = byPath.get(t)!;
      byPath.set(first, { ...src, path: first });
      for (const m of members.slice(1))
        byPath.set(m, { ...byPath.get(m)!, type: "hardlink", linkTarget: first, content: undefined });
    } else {
      for (const m of members.slice(1)) byPath.get(m)!.linkTarget = first;
    }
  }
  for (const e of byPath.values()) if (e.type === "symlink") checkSymlinkTarget(e.path, e.linkTarget ?? "", subject);
  return [...byPath.values()].sort((a, b) => comparePaths(a.path, b.path));
}

/** Byte order of UTF-8 paths; a directory always sorts before what it holds. */
export function comparePaths(a: string, b: string): number {
  const x = Buffer.from(a),
    y = Buffer.from(b);
  return Buffer.compare(x, y);
}

async function contentInfo(e: PlannedEntry): Promise<{ size: number; sha1: string; small?: Buffer }> {
  const c = e.content;
  if (c === undefined) return { size: 0, sha1: createHash("sha1").digest("hex"), small: Buffer.alloc(0) };
  if (typeof c === "string" || c instanceof Uint8Array) {
    const b = Buffer.from(c as Uint8Array | string);
    return { size: b.length, sha1: createHash("sha1").update(b).digest("hex"), small: b };
  }
  const h = createHash("sha1");
  let size = 0;
  for await (const chunk of createReadStream(c.file)) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha1: h.digest("hex") };
}

async function* dataTar(
  entries: PlannedEntry[],
  mtime: number,
  totals: { installed: number },
): AsyncGenerator<Uint8Array> {
  for (const e of entries) {
    const pax: Record<string, string | Uint8Array> = {};
    for (const [k, v] of Object.entries(e.xattrs ?? {})) pax[`SCHILY.xattr.${k}`] = v;
    if (e.type === "file") {
      const ci = await contentInfo(e);
      pax["APK-TOOLS.checksum.SHA1"] = ci.sha1;
      if (ci.size > 4 * 1024 ** 3)
        process.emitWarning(`${e.path}: ${ci.size} bytes; apk 2.14 reads sizes above 4 GiB incorrectly`);
      totals.installed += ci.size;
      yield encodeHeader({ ...hdr(e, mtime), size: ci.size, pax });
      if (ci.small) yield ci.small;
      else {
        let seen = 0;
        for await (const chunk of createReadStream((e.content as { file: string }).file)) {
          seen += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (seen !== ci.size)
          throw new ApkError("INVALID_FIELD", `${e.path}: file changed while it was being packaged`, {
            subject: e.path,
          });
      }
      const pad = padding(ci.size);
      if (pad) yield new Uint8Array(pad);
    } else {
      if (e.type === "symlink")
        pax["APK-TOOLS.checksum.SHA1"] = createHash("sha1")
          .update(e.linkTarget ?? "")
          .digest("hex");
      yield encodeHeader({ ...hdr(e, mtime), size: 0, pax });
    }
  }
  yield ZERO_BLOCK;
  yield ZERO_BLOCK;
}

function hdr(e: PlannedEntry, mtime: number) {
  const h: Parameters<typeof encodeHeader>[0] = {
    path: e.path + (e.type === "dir" ? "/" : ""),
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: 0,
    mtime,
  };
  if (e.uname !== undefined) h.uname = e.uname;
  if (e.gname !== undefined) h.gname = e.gname;
  if (e.linkTarget !== undefined) h.linkTarget = e.linkTarget;
  if (e.devMajor !== undefined) h.devMajor = e.devMajor;
  if (e.devMinor !== undefined) h.devMinor = e.devMinor;
  return h;
}

/** Tar of the control files, without end blocks (apk counts zero blocks across members). */
export function buildControlTar(
  pkginfo: string,
  scripts: WritePackageOptions["scripts"],
  controlFiles: WritePackageOptions["controlFiles"],
  mtime: number,
): Buffer {
  const parts: Uint8Array[] = [];
  const add = (name: string, body: string | Uint8Array, mode: number) => {
    const b = Buffer.from(body as Uint8Array);
    parts.push(
      encodeHeader({ path: name, type: "file", mode, uid: 0, gid: 0, size: b.length, mtime }),
      b,
      new Uint8Array(padding(b.length)),
    );
  };
  add(".PKGINFO", Buffer.from(pkginfo, "utf8"), 0o644);
  for (const name of SCRIPT_NAMES) {
    const s = scripts?.[name];
    if (s !== undefined) add(name, typeof s === "string" ? Buffer.from(s, "utf8") : s, 0o755);
  }
  for (const name of Object.keys(controlFiles ?? {}).sort()) {
    if (
      !name.startsWith(".") ||
      name.includes("/") ||
      name === ".PKGINFO" ||
      (SCRIPT_NAMES as readonly string[]).includes(name) ||
      name.startsWith(".SIGN.")
    ) {
      throw new ApkError(
        "INVALID_FIELD",
        `control file name ${JSON.stringify(name)} must be a dot-file other than .PKGINFO, scripts and signatures`,
        { subject: name },
      );
    }
    const v = controlFiles![name]!;
    add(name, typeof v === "string" ? Buffer.from(v, "utf8") : v, 0o644);
  }
  return Buffer.concat(parts);
}

/** Write a package to `outPath` atomically. */
export async function writePackage(opts: WritePackageOptions, outPath: string): Promise<WrittenPackage> {
  validatePackageInfo(opts.info, opts.info.name || "package");
  const mtime = opts.sourceDateEpoch ?? 0;
  const entries = planEntries(opts.entries, `${opts.info.name}-${opts.info.version}`);
  const tmpData = tempPathFor(outPath, "-data");
  try {
    const totals = { installed: 0 };
    const dataHash = createHash("sha256");
    // The data member is deflated on every core (one gzip member, as pigz writes it; pgzip.ts).
    const fh = await open(tmpData, "w", 0o600);
    try {
      for await (const chunk of parallelGzip(dataTar(entries, mtime, totals), { level: opts.gzipLevel ?? 6 })) {
        dataHash.update(chunk);
        await fh.write(chunk);
      }
    } finally {
      await fh.close();
    }
    const info: PackageInfo = { ...opts.info, dataHash: dataHash.digest("hex") };
    if (info.installedSize === undefined) info.installedSize = totals.installed;
    if (info.buildDate === undefined && opts.sourceDateEpoch !== undefined) info.buildDate = opts.sourceDateEpoch;
    const control = gzipMember(buildControlTar(formatPkgInfo(info), opts.scripts, opts.controlFiles, mtime));
    const sig = opts.signingKeys?.length
      ? buildSignatureMember(control, opts.signingKeys, {
          type: opts.signatureType ?? "RSA256",
          sourceDateEpoch: mtime,
        })
      : Buffer.alloc(0);
    await replaceAtomic(outPath, (tmp) => joinFiles(tmp, [sig, control], tmpData));
    const size = (await stat(outPath)).size;
    const checksum = identityOf(control);
    return { path: outPath, info, checksum, size, record: writtenRecord(info, checksum, size) };
  } finally {
    await rm(tmpData, { force: true });
  }
}

/** The index record of a package written with `info`: its .PKGINFO read back, as indexRecordForPackage reads it. */
function writtenRecord(info: PackageInfo, checksum: string, fileSize: number): IndexRecord {
  const rec: IndexRecord = { ...parsePkgInfo(formatPkgInfo(info)), extra: [], checksum, fileSize, unknownFields: [] };
  delete rec.dataHash;
  return rec;
}

/** Write `heads` then the bytes of `tailFile` from `tailOffset` to `out`, and fsync. */
export async function joinFiles(out: string, heads: Uint8Array[], tailFile: string, tailOffset = 0): Promise<void> {
  const fh = await open(out, "w", 0o644);
  try {
    for (const h of heads) if (h.length) await fh.write(h);
    const src = createReadStream(tailFile, { start: tailOffset });
    for await (const chunk of src) await fh.write(chunk as Buffer);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Entries for every file below `dir`; owners normalised to root unless asked to keep them. */
export async function entriesFromDirectory(dir: string, opts: { keepOwners?: boolean } = {}): Promise<EntrySpec[]> {
  const out: EntrySpec[] = [];
  const seenInodes = new Map<string, string>();
  async function walk(rel: string) {
    const names = (await readdir(join(dir, rel))).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(dir, r);
      const st = await lstat(abs);
      const own = opts.keepOwners ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: 0 };
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) {
        out.push({ path: r, type: "dir", mode, ...own });
        await walk(r);
      } else if (st.isSymbolicLink()) {
        out.push({ path: r, type: "symlink", linkTarget: await readlink(abs), ...own });
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? seenInodes.get(key) : undefined;
        if (first) out.push({ path: r, type: "hardlink", linkTarget: first, mode, ...own });
        else {
          if (st.nlink > 1) seenInodes.set(key, r);
          out.push({ path: r, type: "file", mode, content: { file: abs }, ...own });
        }
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const rdev = st.rdev;
        out.push({
          path: r,
          type: st.isCharacterDevice() ? "char" : "block",
          mode,
          devMajor: ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff),
          devMinor: (rdev & 0xff) | ((rdev >> 12) & ~0xff & 0xfffff),
          ...own,
        });
      } else if (st.isFIFO()) {
        out.push({ path: r, type: "fifo", mode, ...own });
      } else {
        throw new ApkError("INVALID_FIELD", `${abs}: sockets cannot be packaged`, { subject: abs });
      }
    }
  }
  await walk("");
  return out;
}
