// Reading a `.apk` (APK v2): signature member, control member, then the data
// member as a stream of entries. Identity (`C:`), datahash and signatures are
// computed over the compressed bytes while reading.

import { createHash, hash, type Hash } from "node:crypto";
import { ApkError } from "./errors.js";
import { MemberStream, type Inflater } from "./member-stream.js";
import { checkSymlinkTarget, normalizeEntryPath, parentDir } from "./paths.js";
import { parsePkgInfo, type PackageInfo } from "./pkginfo.js";
import { parseSignatureName, type SignatureType } from "./keys.js";
import { bufferedEntry, readBody, readHeader, streamBody, type HeaderResult, type ParsedEntry } from "./tar-read.js";
import { decodeUtf8 } from "./utf8.js";
import type { EntryType } from "./tar.js";

export const SCRIPT_NAMES = [
  ".pre-install",
  ".post-install",
  ".pre-deinstall",
  ".post-deinstall",
  ".pre-upgrade",
  ".post-upgrade",
  ".trigger",
] as const;

export interface ReadLimits {
  /** Inflated size caps per member kind (gzip-bomb guard). */
  maxSignatureMember: number;
  maxControlMember: number;
  maxDataMember: number;
}

export const DEFAULT_LIMITS: ReadLimits = {
  maxSignatureMember: 1024 * 1024,
  maxControlMember: 64 * 1024 * 1024,
  maxDataMember: 64 * 1024 * 1024 * 1024,
};

export interface SignatureEntry {
  type: SignatureType;
  keyName: string;
  signature: Buffer;
}

export interface DataEntry {
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  mtime: number;
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  /** APK-TOOLS.checksum.SHA1 as hex, when present. */
  sha1?: string;
  xattrs: Record<string, Buffer>;
  /** Other PAX records. */
  pax: Record<string, Buffer>;
  /** File content; may be read once, before the next entry is requested. */
  content(): AsyncIterable<Uint8Array>;
  /**
   * A regular file's whole content, already checked against its
   * APK-TOOLS.checksum.SHA1, when the reader had all of it at hand. A view of
   * the reader's inflated bytes: copy it to keep it.
   */
  data?: Uint8Array;
}

export interface PackageHead {
  signatures: SignatureEntry[];
  /** Compressed bytes of the signature member (absent for unsigned packages). */
  signatureMember?: Buffer;
  /** Compressed bytes of the control member: what is signed and identified by `C:`. */
  controlMember: Buffer;
  info: PackageInfo;
  pkginfoText: string;
  /** Install scripts and other control dot-files other than `.PKGINFO`, by name. */
  controlFiles: Map<string, Buffer>;
  /** `Q1` + base64 SHA-1 of the control member. */
  checksum: string;
}

/** Where the data member starts in the package file: after the signature and control members (what apk's datahash covers). */
export function dataOffset(head: PackageHead): number {
  return (head.signatureMember?.length ?? 0) + head.controlMember.length;
}

export function identityOf(controlMember: Uint8Array): string {
  return "Q1" + createHash("sha1").update(controlMember).digest("base64");
}

export interface PackageReader {
  head: PackageHead;
  /** The data entries in order. Completing the iteration checks datahash. */
  entries(): AsyncGenerator<DataEntry>;
  /**
   * The same entries in batches, for readers that would rather not wait on
   * each: every entry of a batch but the last has `data`; the last may have
   * to be streamed with content(), before the next batch is asked for.
   */
  entryBatches(): AsyncGenerator<DataEntry[]>;
  /** Read (and check) the rest of the data without yielding it. */
  drain(): Promise<DataSummary>;
  close(): Promise<void>;
}

export interface DataSummary {
  /** Hex SHA-256 of the compressed data member. */
  dataHash: string;
  dataMemberSize: number;
  entries: number;
}

/** Where the data member is and what has been hashed of it so far. */
interface DataState {
  member: number;
  /** zlib's output buffer size for the data member, from the size .PKGINFO declares (unset: gzip's default). */
  outputChunk?: number;
  hash: Hash | undefined;
  size: number;
}

/** Open a package stream; reads the signature and control members eagerly. */
export async function openPackage(
  source: AsyncIterable<Uint8Array>,
  opts: { subject?: string; limits?: Partial<ReadLimits>; inflate?: Inflater } = {},
): Promise<PackageReader> {
  const subject = opts.subject ?? "package";
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const raw: Uint8Array[][] = [[], []];
  const data: DataState = { member: -1, hash: undefined, size: 0 };
  const ms = openMemberStream(source, subject, limits, raw, data, opts.inflate);

  try {
    const { head, controlIndex } = await readHead(ms, subject, limits, raw);
    data.member = controlIndex + 1;
    // Large data inflates faster into large buffers; a small package should not allocate one.
    if ((head.info.installedSize ?? 0) > 4 * 1024 * 1024) data.outputChunk = 1024 * 1024;
    data.hash = createHash("sha256");
    return dataReader(ms, subject, head.info, data, head);
  } catch (e) {
    await ms.close().catch(() => undefined);
    throw e;
  }
}

/**
 * The member stream of a package: keeps the compressed bytes of the first two
 * members, hashes those of the data member, and refuses anything after it.
 */
function openMemberStream(
  source: AsyncIterable<Uint8Array>,
  subject: string,
  limits: ReadLimits,
  raw: Uint8Array[][],
  data: DataState,
  inflate?: Inflater,
): MemberStream {
  return new MemberStream(source, {
    subject,
    inflate,
    onCompressed: (m, bytes) => {
      if (m < 2 && m !== data.member) raw[m]!.push(Buffer.from(bytes));
      if (m === data.member) {
        data.hash!.update(bytes);
        data.size += bytes.length;
      } else if (m > data.member && data.member >= 0) {
        throw new ApkError("BAD_ARCHIVE", `${subject}: unexpected gzip member after the data member`, { subject });
      }
    },
    outputChunkSize: (m) => (m === data.member ? data.outputChunk : undefined),
    maxMemberSize: (m) =>
      m === data.member
        ? limits.maxDataMember
        : m === 0
          ? Math.max(limits.maxSignatureMember, limits.maxControlMember)
          : limits.maxControlMember,
  });
}

/** Read the signature member (if any) and the control member into a PackageHead. */
async function readHead(
  ms: MemberStream,
  subject: string,
  limits: ReadLimits,
  raw: Uint8Array[][],
): Promise<{ head: PackageHead; controlIndex: number }> {
  // Member 1 holds the signatures, or is the control member of an unsigned package.
  const signatures: SignatureEntry[] = [];
  let controlIndex = 0;
  let r = await readHeader(ms);
  if (r.kind === "entry" && parseSignatureName(r.entry.rawPath)) {
    await readSignatures(ms, r, signatures, subject);
    if (!(await ms.nextMember()))
      throw new ApkError("TRUNCATED", `${subject}: ends after the signature member`, { subject });
    controlIndex = 1;
    r = await readHeader(ms);
  }
  const { pkginfoText, controlFiles } = await readControlEntries(ms, r, subject, limits);
  const info = parsePkgInfo(pkginfoText, `${subject}: .PKGINFO`);
  const controlMember = Buffer.concat(raw[controlIndex]!);
  const head: PackageHead = {
    signatures,
    controlMember,
    info,
    pkginfoText,
    controlFiles,
    checksum: identityOf(controlMember),
  };
  if (controlIndex === 1) head.signatureMember = Buffer.concat(raw[0]!);
  raw[0] = [];
  raw[1] = [];
  return { head, controlIndex };
}

/** The `.SIGN.*` entries of the signature member, starting at its first header `r`. */
async function readSignatures(
  ms: MemberStream,
  r: HeaderResult,
  signatures: SignatureEntry[],
  subject: string,
): Promise<void> {
  for (; r.kind !== "member-end"; r = await readHeader(ms)) {
    if (r.kind === "zero")
      throw new ApkError("BAD_ARCHIVE", `${subject}: end-of-archive blocks inside the signature member`, {
        subject,
      });
    const sig = parseSignatureName(r.entry.rawPath);
    if (!sig)
      throw new ApkError(
        "BAD_ARCHIVE",
        `${subject}: ${JSON.stringify(r.entry.rawPath)} shares the signature member (it must hold only .SIGN.* entries)`,
        { subject },
      );
    if (r.entry.type !== "file")
      throw new ApkError("BAD_ARCHIVE", `${subject}: signature entry ${r.entry.rawPath} is not a regular file`, {
        subject,
      });
    signatures.push({ ...sig, signature: await readBody(ms, r.entry, 64 * 1024) });
  }
}

/** `.PKGINFO` and the other control files of the control member, starting at its first header `r`. */
async function readControlEntries(
  ms: MemberStream,
  r: HeaderResult,
  subject: string,
  limits: ReadLimits,
): Promise<{ pkginfoText: string; controlFiles: Map<string, Buffer> }> {
  const controlFiles = new Map<string, Buffer>();
  let pkginfoText: string | undefined;
  for (; r.kind !== "member-end"; r = await readHeader(ms)) {
    if (r.kind === "zero")
      throw new ApkError("BAD_ARCHIVE", `${subject}: end-of-archive blocks inside the control member`, { subject });
    const e = r.entry;
    if (parseSignatureName(e.rawPath))
      throw new ApkError("BAD_ARCHIVE", `${subject}: signature entry ${e.rawPath} inside the control member`, {
        subject,
      });
    if (!e.rawPath.startsWith(".") || e.rawPath.includes("/")) {
      throw new ApkError(
        "BAD_ARCHIVE",
        `${subject}: control member holds a non-control entry ${JSON.stringify(e.rawPath)} (data must start a gzip member of its own)`,
        { subject },
      );
    }
    if (e.type !== "file")
      throw new ApkError("BAD_ARCHIVE", `${subject}: control entry ${e.rawPath} is not a regular file`, { subject });
    const body = await readBody(ms, e, limits.maxControlMember);
    if (e.rawPath === ".PKGINFO") {
      if (pkginfoText !== undefined) throw new ApkError("BAD_ARCHIVE", `${subject}: two .PKGINFO entries`, { subject });
      pkginfoText = decodeUtf8(body, ".PKGINFO", subject, { code: "INVALID_FIELD", firstLine: 1 });
    } else {
      if (pkginfoText === undefined)
        throw new ApkError("BAD_ARCHIVE", `${subject}: .PKGINFO must be the first control entry, found ${e.rawPath}`, {
          subject,
        });
      controlFiles.set(e.rawPath, body);
    }
  }
  if (pkginfoText === undefined)
    throw new ApkError("BAD_ARCHIVE", `${subject}: no .PKGINFO in the control member`, { subject });
  return { pkginfoText, controlFiles };
}

/** The PackageReader over the data member, once the head has been read. */
function dataReader(
  ms: MemberStream,
  subject: string,
  info: PackageInfo,
  data: DataState,
  head: PackageHead,
): PackageReader {
  let consumed = false;

  async function* entryBatches(): AsyncGenerator<DataEntry[]> {
    if (consumed) throw new Error("package data can be read only once");
    consumed = true;
    if (!(await ms.nextMember())) throw new ApkError("TRUNCATED", `${subject}: no data member`, { subject });
    const entryCount = yield* dataEntries(ms, subject);
    if (await ms.nextMember())
      throw new ApkError("BAD_ARCHIVE", `${subject}: unexpected gzip member after the data member`, { subject });
    const digest = data.hash!.digest("hex");
    summary = { dataHash: digest, dataMemberSize: data.size, entries: entryCount };
    if (info.dataHash !== undefined && info.dataHash.toLowerCase() !== digest) {
      throw new ApkError("BAD_SIGNATURE", `${subject}: data does not match datahash in .PKGINFO`, { subject });
    }
  }
  async function* entries(): AsyncGenerator<DataEntry> {
    for await (const batch of entryBatches()) for (const e of batch) yield e;
  }
  let summary: DataSummary | undefined;
  return {
    head,
    entries,
    entryBatches,
    async drain() {
      for await (const _ of entryBatches());
      return summary!;
    },
    close: () => ms.close(),
  };
}

/**
 * What the entries so far have established, for checking the next one: the
 * type of every path seen. apk would let a later entry replace an earlier one
 * of the same path; a directory turned into a symlink would then re-root the
 * entries below it and defeat the escape checks, so a repeated path is refused.
 */
type SeenEntries = Map<string, EntryType>;

/**
 * The entries of the data member, up to its end-of-archive blocks, in
 * batches (see PackageReader.entryBatches); returns how many were counted.
 */
async function* dataEntries(ms: MemberStream, subject: string): AsyncGenerator<DataEntry[], number> {
  const seen: SeenEntries = new Map();
  let entryCount = 0;
  for (;;) {
    // Entries lying whole in the inflated bytes at hand: parsed and checked without waiting.
    if (ms.buffered().length === 0) await ms.atMemberEnd();
    const batch: DataEntry[] = [];
    let refused: unknown;
    try {
      for (let got; (got = bufferedEntry(ms.buffered(), subject, ms.member));) {
        const bytes = ms.buffered().subarray(got.body, got.body + got.entry.size);
        ms.skip(got.end);
        const de = admit(got.entry, seen, subject);
        const { path } = de;
        if (de.type === "file" && de.sha1 !== undefined && hash("sha1", bytes, "hex") !== de.sha1)
          throw contentMismatch(subject, path);
        if (path === "") continue; // the root directory's own entry
        entryCount++;
        if (skippedOnInstall(path)) continue;
        if (de.type === "file") de.data = bytes;
        de.content = onceContent(bytes, path);
        batch.push(de);
      }
    } catch (e) {
      refused = e;
    }
    if (refused !== undefined) {
      // As when read one by one: the entries before the bad one are given, then the error.
      if (batch.length) yield batch;
      throw refused;
    }
    // The next entry the general way: it crosses the end of the bytes at hand, or ends the archive.
    const r = await readHeader(ms);
    if (r.kind === "member-end")
      throw new ApkError("BAD_ARCHIVE", `${subject}: data member ends without end-of-archive blocks`, {
        subject,
      });
    if (r.kind === "zero") {
      if (batch.length) yield batch;
      await checkEndPadding(ms, subject);
      break;
    }
    const e = r.entry;
    const de = admit(e, seen, subject);
    const content = entryContent(ms, e, de, de.path, subject);
    de.content = content.body;
    if (de.path === "") {
      if (batch.length) yield batch;
      for await (const _ of content.body());
      continue;
    }
    entryCount++;
    if (!skippedOnInstall(de.path)) batch.push(de);
    if (batch.length) yield batch;
    if (!content.read) for await (const _ of content.body());
  }
  return entryCount;
}

/** The data entry of a parsed one, its name and (but for the root directory's own entry, path "") its placement checked. */
function admit(e: ParsedEntry, seen: SeenEntries, subject: string): DataEntry {
  const path = normalizeEntryPath(e.rawPath, subject);
  const de = toDataEntry(e, path, subject);
  if (path !== "") checkEntryPlacement(path, de, seen, subject);
  return de;
}

function contentMismatch(subject: string, path: string): ApkError {
  return new ApkError("BAD_ARCHIVE", `${subject}: ${path}: content does not match its APK-TOOLS.checksum.SHA1`, {
    subject,
  });
}

/** Content already at hand, readable once as the streamed kind is. */
function onceContent(bytes: Uint8Array, path: string): () => AsyncGenerator<Uint8Array> {
  let read = false;
  return async function* () {
    if (read) throw new Error(`${path}: content already read`);
    read = true;
    if (bytes.length) yield bytes;
  };
}

/** Everything after the two end blocks must be zero padding. */
async function checkEndPadding(ms: MemberStream, subject: string): Promise<void> {
  while (!(await ms.atMemberEnd())) {
    const z = await ms.readSome(64 * 1024, "padding");
    if (z.some((b) => b !== 0))
      throw new ApkError("BAD_ARCHIVE", `${subject}: data after the end of the archive`, { subject });
  }
}

/** An entry's content, readable once, checked against its APK-TOOLS.checksum.SHA1. */
function entryContent(
  ms: MemberStream,
  e: ParsedEntry,
  de: DataEntry,
  path: string,
  subject: string,
): { read: boolean; body: () => AsyncGenerator<Uint8Array> } {
  const content = {
    read: false,
    body: async function* (): AsyncGenerator<Uint8Array> {
      if (content.read) throw new Error(`${path}: content already read`);
      content.read = true;
      const h = de.sha1 !== undefined ? createHash("sha1") : undefined;
      for await (const c of streamBody(ms, e)) {
        h?.update(c);
        yield c;
      }
      if (h && de.type === "file") {
        const got = h.digest("hex");
        if (got !== de.sha1) throw contentMismatch(subject, path);
      }
    },
  };
  return content;
}

/** Refuse repeated paths, entries before their directory, escaping symlinks and dangling hard links. */
function checkEntryPlacement(path: string, de: DataEntry, seen: SeenEntries, subject: string): void {
  if (seen.has(path))
    throw new ApkError("BAD_ARCHIVE", `${subject}: ${path} appears twice in the archive`, { subject });
  const parent = parentDir(path);
  if (parent !== "" && seen.get(parent) !== "dir") {
    throw new ApkError(
      "BAD_ARCHIVE",
      `${subject}: ${path} comes before an entry for its directory ${parent}/ (apk: "no dirent in archive")`,
      { subject },
    );
  }
  if (de.type === "symlink") checkSymlinkTarget(path, de.linkTarget ?? "", subject);
  if (de.type === "hardlink") {
    const target = normalizeEntryPath(de.linkTarget ?? "", subject);
    if (seen.get(target) !== "file")
      throw new ApkError(
        "BAD_ARCHIVE",
        `${subject}: hard link ${path} -> ${de.linkTarget} does not name an earlier regular file of this package`,
        { subject },
      );
    de.linkTarget = target;
  }
  seen.set(path, de.type);
}

/** apk skips top-level dot-files and .keep_* files on install. */
function skippedOnInstall(path: string): boolean {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return (!path.includes("/") && path.startsWith(".")) || base.startsWith(".keep_");
}

function toDataEntry(e: ParsedEntry, path: string, subject: string): DataEntry {
  const xattrs: Record<string, Buffer> = {};
  const pax: Record<string, Buffer> = {};
  let sha1: string | undefined;
  for (const [k, v] of e.pax) {
    if (k === "path" || k === "linkpath" || k === "size") continue;
    if (k.startsWith("SCHILY.xattr.")) xattrs[k.slice("SCHILY.xattr.".length)] = v;
    else if (k === "APK-TOOLS.checksum.SHA1") {
      sha1 = v.toString("ascii").toLowerCase();
      if (!/^[0-9a-f]{40}$/.test(sha1))
        throw new ApkError("BAD_ARCHIVE", `${subject}: ${path}: malformed APK-TOOLS.checksum.SHA1`, { subject });
    } else pax[k] = v;
  }
  const de: DataEntry = {
    path,
    type: e.type,
    mode: e.mode & 0o7777,
    uid: e.uid,
    gid: e.gid,
    uname: e.uname,
    gname: e.gname,
    size: e.size,
    mtime: e.mtime,
    xattrs,
    pax,
    content: () => {
      throw new Error("unreachable");
    },
  };
  if (e.type === "symlink" || e.type === "hardlink") de.linkTarget = e.linkTarget;
  if (e.type === "char" || e.type === "block") {
    de.devMajor = e.devMajor;
    de.devMinor = e.devMinor;
  }
  if (sha1 !== undefined) de.sha1 = sha1;
  return de;
}
