// Debian binary packages (.deb) for the distribution's bootstrap: read the ar
// container, parse the control fields, unpack data.tar into a directory with
// the same safety rules as source archives, optionally relocated to a
// merged-usr layout; and map Debian versions onto apk versions.

import { createReadStream } from "node:fs";
import * as fsp from "node:fs/promises";
import { posix } from "node:path";
import { isValidVersion } from "@kiln/apk";
import {
  type ArchiveFormat,
  type Compression,
  type ExtractSummary,
  SourceError,
  extractCompressedTar,
  parseDeb822,
  readTarFiles,
} from "./fetch-source.js";

export interface ArMember {
  name: string;
  /** Offset of the member's data in the file. */
  offset: number;
  size: number;
}

const AR_MAGIC = "!<arch>\n";

/** List the members of an ar archive (System V/GNU names with a trailing "/", BSD "#1/len" long names). */
export async function readArMembers(file: string): Promise<ArMember[]> {
  const fh = await fsp.open(file, "r");
  try {
    const { size: fileSize } = await fh.stat();
    const magic = Buffer.alloc(8);
    await fh.read(magic, 0, 8, 0);
    if (magic.toString("latin1") !== AR_MAGIC)
      throw new SourceError("BAD_ARCHIVE", `${file}: not a Debian package (no ar archive signature)`);
    const out: ArMember[] = [];
    let pos = 8;
    const hdr = Buffer.alloc(60);
    while (pos < fileSize) {
      if (pos + 60 > fileSize) {
        // A lone padding newline at the end is harmless.
        if (fileSize - pos === 1) break;
        throw new SourceError("BAD_ARCHIVE", `${file}: truncated ar member header at offset ${pos}`);
      }
      await fh.read(hdr, 0, 60, pos);
      if (hdr.subarray(58, 60).toString("latin1") !== "`\n")
        throw new SourceError("BAD_ARCHIVE", `${file}: bad ar member header at offset ${pos}`);
      let name = hdr.subarray(0, 16).toString("latin1").trimEnd();
      const sizeStr = hdr.subarray(48, 58).toString("latin1").trim();
      if (!/^\d+$/.test(sizeStr))
        throw new SourceError("BAD_ARCHIVE", `${file}: bad ar member size ${JSON.stringify(sizeStr)}`);
      let size = Number(sizeStr);
      let offset = pos + 60;
      if (offset + size > fileSize)
        throw new SourceError("BAD_ARCHIVE", `${file}: ar member ${JSON.stringify(name)} is truncated`);
      const bsd = /^#1\/(\d+)$/.exec(name);
      if (bsd) {
        const n = Number(bsd[1]);
        const b = Buffer.alloc(n);
        await fh.read(b, 0, n, offset);
        name = b.toString("utf8").replace(/\0+$/, "");
        offset += n;
        size -= n;
      } else if (name.endsWith("/") && name !== "/" && name !== "//") name = name.slice(0, -1);
      out.push({ name, offset, size });
      pos = offset + size + ((offset + size) % 2);
    }
    return out;
  } finally {
    await fh.close();
  }
}

const MEMBER_FORMATS: Record<string, { format: ArchiveFormat; compression: Compression }> = {
  "": { format: "tar", compression: "none" },
  ".gz": { format: "tar.gz", compression: "gzip" },
  ".xz": { format: "tar.xz", compression: "xz" },
  ".zst": { format: "tar.zst", compression: "zstd" },
  ".bz2": { format: "tar.bz2", compression: "bzip2" },
  ".lzma": { format: "tar.lzma", compression: "lzma" },
};

interface DebLayout {
  version: string;
  control: ArMember & { format: ArchiveFormat; compression: Compression };
  data: ArMember & { format: ArchiveFormat; compression: Compression };
}

async function layout(file: string): Promise<DebLayout> {
  const members = await readArMembers(file);
  const first = members[0];
  if (!first || first.name !== "debian-binary")
    throw new SourceError("BAD_ARCHIVE", `${file}: the first member is not debian-binary`);
  const fh = await fsp.open(file, "r");
  let version: string;
  try {
    const b = Buffer.alloc(Math.min(first.size, 64));
    await fh.read(b, 0, b.length, first.offset);
    version = b.toString("latin1").trim();
  } finally {
    await fh.close();
  }
  if (!/^2\.\d+$/.test(version))
    throw new SourceError(
      "BAD_ARCHIVE",
      `${file}: unsupported .deb format version ${JSON.stringify(version)} (expected 2.x)`,
    );
  const find = (base: "control.tar" | "data.tar"): DebLayout["control"] => {
    const m = members.find((x) => x.name === base || x.name.startsWith(base + "."));
    if (!m) throw new SourceError("BAD_ARCHIVE", `${file}: no ${base} member`);
    const f = MEMBER_FORMATS[m.name.slice(base.length)];
    if (!f) throw new SourceError("BAD_ARCHIVE", `${file}: unsupported member ${m.name}`);
    return { ...m, ...f };
  };
  return { version, control: find("control.tar"), data: find("data.tar") };
}

function memberStream(file: string, m: ArMember): ReturnType<typeof createReadStream> {
  // createReadStream's `end` is inclusive; an empty member reads nothing.
  return m.size === 0
    ? createReadStream(file, { start: 0, end: -1 })
    : createReadStream(file, { start: m.offset, end: m.offset + m.size - 1 });
}

export interface DebInfo {
  /** The control file's fields, names as written (Package, Version, Architecture, Depends, Provides, ...). */
  control: Record<string, string>;
  /** Format of data.tar: "tar.xz", "tar.zst", "tar.gz", ... */
  dataFormat: ArchiveFormat;
  controlFormat: ArchiveFormat;
  /** debian-binary, e.g. "2.0". */
  formatVersion: string;
  /** Every regular file of control.tar (control, md5sums, shlibs, postinst, ...), by name. */
  controlFiles: Record<string, Buffer>;
}

/** Parse a control file's first paragraph (continuation lines joined with "\n"). */
export function parseDebControl(text: string): Record<string, string> {
  return parseDeb822(text)[0] ?? {};
}

/** Read a .deb's metadata without unpacking its data. */
export async function readDeb(file: string): Promise<DebInfo> {
  const l = await layout(file);
  const files = await readTarFiles(
    memberStream(file, l.control),
    l.control.compression,
    `${file}: ${l.control.name}`,
    64 << 20,
  );
  const control = files.get("control");
  if (!control) throw new SourceError("BAD_ARCHIVE", `${file}: ${l.control.name} has no control file`);
  const fields = parseDebControl(control.toString("utf8"));
  for (const f of ["Package", "Version", "Architecture"]) {
    if (!fields[f]) throw new SourceError("BAD_ARCHIVE", `${file}: control file has no ${f} field`);
  }
  return {
    control: fields,
    dataFormat: l.data.format,
    controlFormat: l.control.format,
    formatVersion: l.version,
    controlFiles: Object.fromEntries(files),
  };
}

// Top-level directories that merged-usr folds into /usr (what Debian's usrmerge moves).
const MERGED_DIRS = new Set(["bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32"]);

/** `lib/x/y` → `usr/lib/x/y`; paths outside the merged directories are unchanged. Relative paths, no leading slash. */
export function mergedUsrPath(rel: string): string {
  const first = rel.split("/", 1)[0]!;
  return MERGED_DIRS.has(first) ? `usr/${rel}` : rel;
}

function mergedUsrAbsolute(abs: string): string {
  return "/" + mergedUsrPath(posix.normalize(abs).replace(/^\/+/, ""));
}

/**
 * Symlink target after relocation. Absolute targets into a merged directory
 * are rewritten (`/lib/x` → `/usr/lib/x`). A relative target is kept as
 * written unless the link moved or its target moved; then it is recomputed
 * (lexically, from the original location) relative to the link's new place.
 */
export function mergedUsrSymlink(target: string, newPath: string, originalPath: string): string {
  if (target.startsWith("/")) {
    const mapped = mergedUsrAbsolute(target);
    return target.endsWith("/") && !mapped.endsWith("/") ? mapped + "/" : mapped;
  }
  const resolved = posix.normalize(posix.join("/", posix.dirname(originalPath), target));
  const mapped = mergedUsrAbsolute(resolved);
  if (newPath === originalPath && mapped === resolved) return target;
  const rel = posix.relative(posix.join("/", posix.dirname(newPath)), mapped);
  return rel === "" ? "." : rel;
}

export interface UnpackDebOptions {
  /** Move /bin, /sbin, /lib, /lib64 (and lib32, libx32) contents under /usr, fixing symlinks. */
  mergedUsr: boolean;
  /** Paths (relative, after the merged-/usr move) left out, each with everything under it. */
  exclude?: readonly string[];
}

/** `p` as a normal relative path for `exclude` ("usr/bin/x", a leading / dropped), or undefined when it is not one. */
export function excludePath(p: string): string | undefined {
  const rel = p.replace(/^\/+/, "").replace(/\/+$/, "");
  if (rel === "" || rel.split("/").some((s) => s === "" || s === "." || s === "..")) return undefined;
  return rel;
}

export interface UnpackDebResult extends ExtractSummary {
  control: Record<string, string>;
  dataFormat: ArchiveFormat;
}

/**
 * Unpack a .deb's data.tar into destDir (created if needed), with the safety
 * rules of extractArchive (nothing outside destDir, never through a symlink).
 * With mergedUsr, entries under bin/sbin/lib* land under usr/, relative
 * symlinks are recomputed where needed and absolute ones rewritten; an entry
 * that would then collide with another (a package shipping both /lib/x and
 * /usr/lib/x) is an error. Maintainer scripts are not run.
 */
export async function unpackDeb(file: string, destDir: string, opts: UnpackDebOptions): Promise<UnpackDebResult> {
  const info = await readDeb(file);
  const l = await layout(file);
  const exclude = opts.exclude ?? [];
  const left = (p: string) => exclude.some((e) => p === e || p.startsWith(`${e}/`));
  const map = (p: string) => (opts.mergedUsr ? mergedUsrPath(p) : p);
  const summary = await extractCompressedTar(
    memberStream(file, l.data),
    l.data.compression,
    destDir,
    `${file}: ${l.data.name}`,
    {
      ...(opts.mergedUsr ? { mapSymlink: mergedUsrSymlink, onConflict: "error" as const } : {}),
      ...(opts.mergedUsr || exclude.length ? { mapPath: (p: string) => (left(map(p)) ? null : map(p)) } : {}),
    },
  );
  return { ...summary, control: info.control, dataFormat: info.dataFormat };
}

// ---------------------------------------------------------------------------
// Versions

/*
 * Debian version → apk version. A Debian version is [epoch:]upstream[-revision];
 * an apk version is digits(.digits)*[letter[digits]](_suffix[digits])*[-rN].
 * The apk -rN revision is left to kiln (the recipe's epoch), so the result
 * never has one. The scheme:
 *
 *  - The epoch is dropped: apk has none, and within one Debian package it is
 *    constant, so orderings between that package's versions are unaffected.
 *  - upstream "A+reallyB" becomes B (Debian's way of going back a version).
 *  - upstream: the leading numeric part (1.2.13, 2024, 9.2) is kept, with one
 *    letter and its digits if apk can take it (2024a, 9.2p1). What follows is
 *    read as segments [separator][word][digits]:
 *      · repack markers (dfsg, ds, repack, orig, debian) are dropped;
 *      · after "~", or for the words alpha, beta, pre, rc: a pre-release
 *        suffix _alpha/_beta/_pre/_rc (other words after "~" → _pre), so it
 *        sorts before the release as "~" does;
 *      · git, svn, hg, cvs → _git<n>, _svn<n>, ...; commit hashes are dropped;
 *      · anything else with digits (+20230625, .1, p2, nmu1) → _p<n>;
 *        words without digits are dropped.
 *  - revision: each run of digits becomes a _p<n> suffix, in order; a run
 *    right after "~" becomes _pre<n> instead. So 9 → _p9, 9+deb12u4 →
 *    _p9_p12_p4, 9+b1 (binNMU) → _p9_p1, 1~deb12u1 → _p1_pre12_p1.
 *
 * Examples: 2.36-9+deb12u4 → 2.36_p9_p12_p4; 1:1.2.13.dfsg-1 → 1.2.13_p1;
 * 12.2.0-14 → 12.2.0_p14; 1:9.2p1-2+deb12u3 → 9.2p1_p2_p12_p3;
 * 6.4+20230625-2 → 6.4_p20230625_p2; 1.0~rc1-2 → 1.0_rc1_p2;
 * 3.0.15-1~deb12u1 → 3.0.15_p1_pre12_p1.
 *
 * Order is kept for the usual cases (new upstream releases, revision bumps,
 * stable updates +debNNuM, binNMUs +bN, backports ~bpoN, pre-releases ~rcN).
 * It is lost where information is dropped: versions differing only in the
 * epoch, a repack marker or a word (1.0+dfsg-1 and 1.0-1 map alike).
 * Throws when the upstream version does not start with a digit, or a number
 * is too long for apk (18+ digits).
 */
export function debVersionToApk(v: string): string {
  let s = v.trim();
  const colon = s.indexOf(":");
  if (colon >= 0) {
    if (!/^\d+$/.test(s.slice(0, colon))) throw new Error(`invalid Debian version ${JSON.stringify(v)}: bad epoch`);
    s = s.slice(colon + 1);
  }
  let upstream = s;
  let revision: string | undefined;
  const dash = s.lastIndexOf("-");
  if (dash >= 0) {
    upstream = s.slice(0, dash);
    revision = s.slice(dash + 1);
  }
  const really = upstream.lastIndexOf("+really");
  if (really >= 0) upstream = upstream.slice(really + "+really".length);
  upstream = upstream.toLowerCase();
  const core = /^(\d+(?:\.\d+)*)(?:([a-z])(\d*)(?![a-z]))?/.exec(upstream);
  if (!core)
    throw new Error(
      `cannot map Debian version ${JSON.stringify(v)} to an apk version: the upstream version ${JSON.stringify(upstream)} does not start with a digit`,
    );
  let out = core[1]! + (core[2] ? core[2] + (core[3] ?? "") : "");
  // Commit hashes (git describe's g<hash> too) carry no order; numeric-only runs are dates, kept.
  const rest = upstream
    .slice(core[0].length)
    .replace(/([.+~_-])g?(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![0-9a-z])/g, "");
  const seg = /([.+~_-]*)([a-z]*)(\d*)/g;
  let m: RegExpExecArray | null;
  while ((m = seg.exec(rest)) !== null) {
    if (m[0] === "") {
      seg.lastIndex++;
      continue;
    }
    const [, sep, word, digits] = m as unknown as [string, string, string, string];
    const n = digits === "" ? "" : BigInt(digits).toString();
    if (["dfsg", "ds", "repack", "orig", "debian"].includes(word)) continue;
    if (["alpha", "beta", "pre", "rc"].includes(word)) out += `_${word}${n}`;
    else if (sep.includes("~")) out += `_pre${n}`;
    else if (["git", "svn", "hg", "cvs"].includes(word)) out += `_${word}${n}`;
    else if (n !== "") out += `_p${n}`;
  }
  if (revision !== undefined) {
    let tilde = false;
    for (const t of revision.match(/~|\d+/g) ?? []) {
      if (t === "~") {
        if (tilde) out += "_pre";
        tilde = true;
      } else {
        out += `${tilde ? "_pre" : "_p"}${BigInt(t).toString()}`;
        tilde = false;
      }
    }
    if (tilde) out += "_pre";
  }
  if (!isValidVersion(out))
    throw new Error(`cannot map Debian version ${JSON.stringify(v)} to an apk version (got ${JSON.stringify(out)})`);
  return out;
}
