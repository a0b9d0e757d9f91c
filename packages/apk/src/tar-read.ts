// Reading tar headers from a member stream: PAX records applied, sizes capped,
// and the end-of-archive blocks reported so callers can enforce where apk
// allows them.

import { ApkError } from "./errors.js";
import type { MemberStream } from "./member-stream.js";
import { decodeUtf8 } from "./utf8.js";
import {
  BLOCK,
  decodeHeader,
  entryTypeOf,
  isZeroBlock,
  padding,
  parsePax,
  type EntryType,
  type RawHeader,
} from "./tar.js";

export const MAX_PAX_SIZE = 1024 * 1024;

export interface ParsedEntry {
  /** Path as stored (PAX `path` applied), not yet normalised. */
  rawPath: string;
  type: EntryType;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkTarget: string;
  uname: string;
  gname: string;
  devMajor: number;
  devMinor: number;
  pax: Map<string, Buffer>;
  /** Gzip member the header started in. */
  member: number;
}

export type HeaderResult = { kind: "entry"; entry: ParsedEntry } | { kind: "zero" } | { kind: "member-end" };

export async function readHeader(ms: MemberStream): Promise<HeaderResult> {
  const pax = new Map<string, Buffer>();
  let havePax = false;
  for (;;) {
    const block = await ms.read(BLOCK, "tar header");
    if (block === null) {
      if (havePax)
        throw new ApkError(
          "BAD_ARCHIVE",
          `${ms.subject}: PAX header not followed by an entry in the same gzip member`,
          { subject: ms.subject },
        );
      return { kind: "member-end" };
    }
    if (isZeroBlock(block)) {
      if (havePax)
        throw new ApkError("BAD_ARCHIVE", `${ms.subject}: PAX header followed by end-of-archive`, {
          subject: ms.subject,
        });
      return { kind: "zero" };
    }
    const h = decodeHeaderOf(block, ms.subject);
    if (isExtended(h.typeflag)) {
      if (await readExtendedHeader(ms, h, pax)) havePax = true;
      continue;
    }
    return { kind: "entry", entry: toParsedEntry(ms.subject, ms.member, h, pax) };
  }
}

/** decodeHeader, its errors naming the archive. */
function decodeHeaderOf(block: Uint8Array, subject: string, at = 0): RawHeader {
  try {
    return decodeHeader(block, at);
  } catch (e) {
    if (e instanceof ApkError) throw new ApkError(e.code, `${subject}: ${e.message}`, { subject, cause: e });
    throw e;
  }
}

function isExtended(typeflag: string): boolean {
  return typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K";
}

const NO_PAX: Map<string, Buffer> = new Map();

/** Where an entry found whole in a buffer lies in it. */
export interface BufferedEntry {
  entry: ParsedEntry;
  /** Offset of its content. */
  body: number;
  /** Offset just past its content's padding. */
  end: number;
}

/**
 * The entry at the start of `b` (inflated bytes of one member) when all its
 * blocks lie in `b`: its headers and, for entries with content, the content
 * and its padding. Parsed and checked as readHeader does. Undefined, with
 * nothing consumed, when part of it lies beyond `b`, and for what only
 * readHeader handles (end-of-archive blocks, more than one extended header,
 * global headers and GNU long names, oversized PAX headers): the caller then
 * reads it with readHeader. The common entry of a package costs no await.
 */
export function bufferedEntry(b: Uint8Array, subject: string, member: number): BufferedEntry | undefined {
  let at = 0;
  let pax = NO_PAX;
  for (;;) {
    if (b.length - at < BLOCK) return undefined;
    if (b[at] === 0 && isZeroBlock(b.subarray(at, at + BLOCK))) return undefined;
    const h = decodeHeaderOf(b, subject, at);
    if (isExtended(h.typeflag)) {
      if (pax !== NO_PAX || h.typeflag !== "x" || h.size > MAX_PAX_SIZE) return undefined;
      const end = at + BLOCK + h.size + padding(h.size);
      if (end > b.length) return undefined;
      pax = parsePax(b, subject, at + BLOCK, at + BLOCK + h.size);
      at = end;
      continue;
    }
    const entry = toParsedEntry(subject, member, h, pax === NO_PAX ? new Map() : pax);
    const body = at + BLOCK;
    const end = body + entry.size + padding(entry.size);
    if (end > b.length) return undefined;
    return { entry, body, end };
  }
}

/**
 * Read an extended header's body; a PAX one (`x`) is merged into `pax` and
 * true returned. Global headers and GNU long names are ignored, as apk ignores them.
 */
async function readExtendedHeader(ms: MemberStream, h: RawHeader, pax: Map<string, Buffer>): Promise<boolean> {
  if (h.size > MAX_PAX_SIZE) {
    throw new ApkError(
      "LIMIT",
      `${ms.subject}: extended header of ${h.size} bytes exceeds the ${MAX_PAX_SIZE}-byte limit`,
      { subject: ms.subject },
    );
  }
  const body = (await ms.read(h.size + padding(h.size), "extended header")) ?? new Uint8Array(0);
  if (body.length < h.size)
    throw new ApkError("TRUNCATED", `${ms.subject}: extended header cut off`, { subject: ms.subject });
  if (h.typeflag !== "x") return false;
  for (const [k, v] of parsePax(body.subarray(0, h.size), ms.subject)) pax.set(k, v);
  return true;
}

/** The entry a non-extended header describes, with the PAX records before it applied. */
function toParsedEntry(subject: string, member: number, h: RawHeader, pax: Map<string, Buffer>): ParsedEntry {
  const type = entryTypeOf(h.typeflag);
  if (!type)
    throw new ApkError(
      "BAD_ARCHIVE",
      `${subject}: unsupported tar entry type ${JSON.stringify(h.typeflag)} for ${JSON.stringify(h.name)}`,
      { subject },
    );
  let rawPath = h.prefix ? `${h.prefix}/${h.name}` : h.name;
  let linkTarget = h.linkname;
  let size = h.size;
  const pPath = pax.get("path");
  if (pPath) rawPath = decodeUtf8(pPath, "PAX path", subject);
  const pLink = pax.get("linkpath");
  if (pLink) linkTarget = decodeUtf8(pLink, "PAX linkpath", subject);
  const pSize = pax.get("size");
  if (pSize) {
    const s = pSize.toString("ascii");
    if (!/^\d+$/.test(s))
      throw new ApkError("BAD_ARCHIVE", `${subject}: bad PAX size ${JSON.stringify(s)}`, { subject });
    size = Number(s);
  }
  if (type !== "file") size = type === "hardlink" || type === "symlink" || type === "dir" ? 0 : size;
  return {
    rawPath,
    type,
    typeflag: h.typeflag,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    size,
    mtime: h.mtime,
    linkTarget,
    uname: h.uname,
    gname: h.gname,
    devMajor: h.devMajor,
    devMinor: h.devMinor,
    pax,
    member,
  };
}

/** Read a whole (small) entry body, with its padding, capped. */
export async function readBody(ms: MemberStream, e: ParsedEntry, max: number): Promise<Buffer> {
  if (e.size > max)
    throw new ApkError("LIMIT", `${ms.subject}: ${e.rawPath} is ${e.size} bytes, over the ${max}-byte limit`, {
      subject: ms.subject,
    });
  const b = (await ms.read(e.size + padding(e.size), e.rawPath)) ?? new Uint8Array(0);
  if (b.length < e.size)
    throw new ApkError("TRUNCATED", `${ms.subject}: ${e.rawPath} cut off`, { subject: ms.subject });
  return Buffer.from(b.subarray(0, e.size));
}

/** Stream an entry body in chunks, then consume its padding. */
export async function* streamBody(ms: MemberStream, e: ParsedEntry): AsyncGenerator<Uint8Array> {
  let left = e.size;
  while (left > 0) {
    const c = await ms.readSome(Math.min(left, 256 * 1024), e.rawPath);
    left -= c.length;
    yield c;
  }
  const pad = padding(e.size);
  if (pad && (await ms.read(pad, e.rawPath)) === null)
    throw new ApkError("TRUNCATED", `${ms.subject}: ${e.rawPath} padding cut off`, { subject: ms.subject });
}
