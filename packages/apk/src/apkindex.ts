// APKINDEX.tar.gz: a signature member, then one gzip member with a tar of
// DESCRIPTION and APKINDEX closed by end blocks. The signature covers every
// compressed byte after the signature member.
//
// Reading is two steps so trust is decided before any untrusted byte is
// inflated: `openIndex` reads only the (small) signature member and locates
// the compressed bytes it covers; `read()` then inflates and parses the body
// within size and record limits. `readIndex` does both, checking the
// signature in between when given a keyring.

import { ApkError } from "./errors.js";
import { gzipMember } from "./gzip.js";
import {
  formatIndexText,
  IndexTextParser,
  parseIndexText,
  DEFAULT_MAX_INDEX_RECORDS,
  type IndexRecord,
  type ParseIndexOptions,
} from "./index-text.js";
import { parseSignatureName, type Keyring, type SigningKey } from "./keys.js";
import { MemberStream } from "./member-stream.js";
import type { SignatureEntry } from "./package-read.js";
import { buildSignatureMember, checkSignature, type SignatureCheck, type SignOptions } from "./signature.js";
import { readBody, readHeader, streamBody, type ParsedEntry } from "./tar-read.js";
import { encodeHeader, padding, ZERO_BLOCK } from "./tar.js";
import { decodeUtf8 } from "./utf8.js";
import { compareVersions } from "./version.js";
import { validateDependencyList, validateProvideList } from "./dependency.js";
import { checkArch, checkFileName, checkPackageName, checkVersion } from "./names.js";

/** Largest APKINDEX text (and compressed index file) read unless raised (option `maxSize`, env KILN_MAX_INDEX_SIZE). */
export const DEFAULT_MAX_INDEX_SIZE = 256 * 1024 * 1024;
/** @deprecated the default is {@link DEFAULT_MAX_INDEX_SIZE}. */
export const MAX_INDEX_SIZE = DEFAULT_MAX_INDEX_SIZE;
export { DEFAULT_MAX_INDEX_RECORDS };

const MAX_SIGNATURE_MEMBER = 1024 * 1024;
const MAX_SIGNATURE = 64 * 1024;
const MAX_DESCRIPTION = 1024 * 1024;
// Room for the tar headers, DESCRIPTION and end blocks around the APKINDEX text.
const SLACK = 2 * 1024 * 1024;
// Parse the text as it is inflated, every this many bytes, so a record bomb stops early.
const PARSE_STEP = 256 * 1024;

export interface IndexFile {
  signatures: SignatureEntry[];
  /** Compressed bytes of the signature member, when signed. */
  signatureMember?: Buffer;
  /** Compressed bytes after the signature member: what the signatures cover. */
  body: Buffer;
  description: string;
  /** The APKINDEX text exactly as stored (decoded on each access; the bytes are kept, not the string). */
  readonly text: string;
  records: IndexRecord[];
  /** Names of entries other than DESCRIPTION and APKINDEX (apk ignores them; stricter readers do not). */
  otherEntries: string[];
  /** With a keyring: the signature verdict, decided before the body was inflated. */
  trust?: SignatureCheck;
}

export interface ReadIndexOptions extends ParseIndexOptions {
  subject?: string;
  /** Largest APKINDEX text, in bytes (the compressed file may be {@link SLACK} larger). */
  maxSize?: number;
  /** Check the signature against these keys before inflating anything; refuse unless OK. */
  keyring?: Keyring;
  /** With `keyring`: read an index that is not OK anyway (its verdict is in `trust`). */
  allowUntrusted?: boolean;
}

/** An index whose signature member has been read and whose body has not been inflated yet. */
export interface IndexHead {
  readonly subject: string;
  readonly signatures: SignatureEntry[];
  readonly signatureMember?: Buffer;
  /** Compressed bytes after the signature member: what the signatures cover. */
  readonly body: Buffer;
  /** apk's verdict on the signature; touches only the compressed bytes. */
  check(keyring: Keyring): SignatureCheck;
  /** Inflate and parse the body, within the limits. */
  read(): Promise<IndexFile>;
}

interface IndexLimits {
  maxSize: number;
  maxRecords: number;
}

function envLimit(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v) || Number(v) <= 0)
    throw new ApkError("LIMIT", `${name} must be a positive whole number, got ${JSON.stringify(v)}`, { subject: name });
  return Number(v);
}

function limitsOf(opts: ReadIndexOptions): IndexLimits {
  return {
    maxSize: opts.maxSize ?? envLimit("KILN_MAX_INDEX_SIZE") ?? DEFAULT_MAX_INDEX_SIZE,
    maxRecords: opts.maxRecords ?? envLimit("KILN_MAX_INDEX_RECORDS") ?? DEFAULT_MAX_INDEX_RECORDS,
  };
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** The whole compressed file; the signature must be checked over it before anything is inflated. */
async function collect(source: AsyncIterable<Uint8Array>, max: number, subject: string): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const c of source) {
    size += c.length;
    if (size > max) throw tooBig(subject, "the compressed index is", size, max);
    parts.push(c);
  }
  return Buffer.concat(parts, size);
}

function tooBig(subject: string, what: string, size: number | string, max: number): ApkError {
  return new ApkError(
    "LIMIT",
    `${subject}: ${what} ${size} bytes, over the ${max}-byte limit (raise it with maxSize or KILN_MAX_INDEX_SIZE)`,
    { subject },
  );
}

/** Read the signature member (if any) at the start of `bytes`; returns its entries and compressed length. */
async function readSignatureMember(
  bytes: Buffer,
  subject: string,
  maxUnsigned: number,
): Promise<{ signatures: SignatureEntry[]; length: number }> {
  let length = 0;
  let signed = false;
  const ms = new MemberStream(once(bytes), {
    subject,
    onCompressed: (m, b) => {
      if (m === 0) length += b.length;
    },
    // Until the first header says otherwise this may be an unsigned index's body; only it is read.
    maxMemberSize: () => (signed ? MAX_SIGNATURE_MEMBER : maxUnsigned),
  });
  try {
    const signatures: SignatureEntry[] = [];
    let r = await readHeader(ms);
    if (r.kind !== "entry" || !parseSignatureName(r.entry.rawPath)) return { signatures, length: 0 };
    signed = true;
    for (; r.kind !== "member-end"; r = await readHeader(ms)) {
      if (r.kind === "zero")
        throw new ApkError("BAD_ARCHIVE", `${subject}: end-of-archive blocks inside the signature member`, { subject });
      const sig = parseSignatureName(r.entry.rawPath);
      if (!sig)
        throw new ApkError(
          "BAD_ARCHIVE",
          `${subject}: ${JSON.stringify(r.entry.rawPath)} shares the signature member`,
          { subject },
        );
      signatures.push({ ...sig, signature: await readBody(ms, r.entry, MAX_SIGNATURE) });
    }
    if (length >= bytes.length)
      throw new ApkError("TRUNCATED", `${subject}: ends after the signature member`, { subject });
    return { signatures, length };
  } finally {
    await ms.close().catch(() => undefined);
  }
}

/**
 * Read the signature member of an APKINDEX.tar.gz and locate the bytes it
 * covers; nothing after the signature member is inflated until `read()`.
 */
export async function openIndex(
  source: AsyncIterable<Uint8Array> | Uint8Array,
  opts: ReadIndexOptions = {},
): Promise<IndexHead> {
  const subject = opts.subject ?? "APKINDEX.tar.gz";
  const limits = limitsOf(opts);
  const maxFile = limits.maxSize + SLACK;
  const bytes = source instanceof Uint8Array ? asBuffer(source) : await collect(source, maxFile, subject);
  if (bytes.length > maxFile) throw tooBig(subject, "the compressed index is", bytes.length, maxFile);
  const { signatures, length } = await readSignatureMember(bytes, subject, maxFile);
  const body = bytes.subarray(length);
  const signatureMember = length ? bytes.subarray(0, length) : undefined;
  return {
    subject,
    signatures,
    body,
    ...(signatureMember ? { signatureMember } : {}),
    check: (keyring) => checkSignature(signatures, body, keyring),
    read: () => readIndexBody(body, subject, limits, signatures, signatureMember),
  };
}

/**
 * Parse an APKINDEX.tar.gz. Structure errors throw ApkError. With
 * `keyring`, the signature is checked first, over the compressed bytes, and
 * an index that is not OK is refused (UNTRUSTED / BAD_SIGNATURE) before its
 * body is inflated, unless `allowUntrusted`. Without it, signatures are
 * checked later by `verifyIndex`.
 */
export async function readIndex(
  source: AsyncIterable<Uint8Array> | Uint8Array,
  opts: ReadIndexOptions = {},
): Promise<IndexFile> {
  const head = await openIndex(source, opts);
  let trust: SignatureCheck | undefined;
  if (opts.keyring) {
    trust = head.check(opts.keyring);
    if (trust.verdict !== "OK" && !opts.allowUntrusted) {
      throw new ApkError(
        trust.verdict === "BAD signature" ? "BAD_SIGNATURE" : "UNTRUSTED",
        `${head.subject}: ${trust.verdict}: ${trust.reason}`,
        { subject: head.subject },
      );
    }
  }
  const idx = await head.read();
  if (trust) idx.trust = trust;
  return idx;
}

/** Read an APKINDEX entry into one buffer of its size, parsing as it arrives. */
async function readIndexText(ms: MemberStream, e: ParsedEntry, parser: IndexTextParser): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(e.size);
  let have = 0;
  let parsed = 0;
  while (have < e.size) {
    const c = await ms.readSome(Math.min(e.size - have, 1024 * 1024), e.rawPath);
    buf.set(c, have);
    have += c.length;
    if (have - parsed >= PARSE_STEP) {
      parser.feed(buf, have);
      parsed = have;
    }
  }
  const pad = padding(e.size);
  if (pad && (await ms.read(pad, e.rawPath)) === null)
    throw new ApkError("TRUNCATED", `${ms.subject}: ${e.rawPath} padding cut off`, { subject: ms.subject });
  parser.feed(buf, e.size, true);
  return buf;
}

async function readIndexBody(
  body: Buffer,
  subject: string,
  limits: IndexLimits,
  signatures: SignatureEntry[],
  signatureMember: Buffer | undefined,
): Promise<IndexFile> {
  const ms = new MemberStream(once(body), { subject, maxMemberSize: () => limits.maxSize + SLACK });
  try {
    let description: string | undefined;
    let text: Buffer | undefined;
    let records: IndexRecord[] = [];
    const otherEntries: string[] = [];
    let zeros = 0;
    let r = await readHeader(ms);
    for (;;) {
      if (r.kind === "member-end") {
        // The index tar may in principle span members; the end blocks close it.
        if (!(await ms.nextMember())) break;
      } else if (r.kind === "zero") {
        zeros++;
        if (zeros === 2) {
          while (!(await ms.atMemberEnd())) {
            const z = await ms.readSome(65536, "padding");
            if (z.some((b) => b !== 0))
              throw new ApkError("BAD_ARCHIVE", `${subject}: data after the end of the archive`, { subject });
          }
          if (await ms.nextMember())
            throw new ApkError("BAD_ARCHIVE", `${subject}: unexpected gzip member after the index`, { subject });
          break;
        }
      } else {
        if (zeros) throw new ApkError("BAD_ARCHIVE", `${subject}: a single zero block inside the archive`, { subject });
        const e = r.entry;
        if (parseSignatureName(e.rawPath))
          throw new ApkError("BAD_ARCHIVE", `${subject}: signature entry ${e.rawPath} after the signature member`, {
            subject,
          });
        if (e.rawPath === "APKINDEX") {
          if (text !== undefined) throw new ApkError("BAD_ARCHIVE", `${subject}: two APKINDEX entries`, { subject });
          if (e.size > limits.maxSize) throw tooBig(subject, "APKINDEX is", e.size, limits.maxSize);
          const parser = new IndexTextParser(`${subject}: APKINDEX`, { maxRecords: limits.maxRecords });
          text = await readIndexText(ms, e, parser);
          records = parser.records;
        } else if (e.rawPath === "DESCRIPTION") {
          description = decodeUtf8(await readBody(ms, e, MAX_DESCRIPTION), "DESCRIPTION", subject, {
            code: "INVALID_FIELD",
            firstLine: 1,
          });
        } else {
          otherEntries.push(e.rawPath);
          for await (const _ of streamBody(ms, e));
        }
      }
      r = await readHeader(ms);
    }
    if (zeros < 2)
      throw new ApkError("TRUNCATED", `${subject}: index archive ends without end-of-archive blocks`, { subject });
    if (text === undefined) throw new ApkError("BAD_ARCHIVE", `${subject}: no APKINDEX entry`, { subject });
    const bytes = text;
    const idx: IndexFile = {
      signatures,
      body,
      description: description ?? "",
      get text() {
        return bytes.toString("utf8");
      },
      records,
      otherEntries,
    };
    if (signatureMember) idx.signatureMember = signatureMember;
    return idx;
  } finally {
    await ms.close().catch(() => undefined);
  }
}

export function verifyIndex(idx: IndexFile, keyring: Keyring): SignatureCheck {
  return checkSignature(idx.signatures, idx.body, keyring);
}

/** Name, then version (apk's order); ties keep input order. */
export function sortIndexRecords(records: readonly IndexRecord[]): IndexRecord[] {
  return [...records].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : compareVersions(a.version, b.version),
  );
}

/** Check what apk would silently mangle: bad versions and dependency tokens. */
export function validateIndexRecord(r: IndexRecord, where: string): void {
  checkPackageName(r.name, where, "P:");
  checkVersion(r.version, where, "V:");
  if (!r.arch) throw new ApkError("INVALID_FIELD", `${where}: missing arch`, { subject: where });
  checkArch(r.arch, where, "A:");
  checkFileName(r.name, r.version, where);
  validateDependencyList(r.depends, `${where} D:`);
  validateProvideList(r.provides, `${where} p:`);
  validateDependencyList(r.installIf, `${where} i:`);
}

export interface BuildIndexOptions extends SignOptions {
  description?: string;
  signingKeys?: SigningKey[];
}

/** The unsigned body: one gzip member with DESCRIPTION and APKINDEX and end blocks. */
export function buildIndexBody(
  records: readonly IndexRecord[],
  opts: { description?: string; sourceDateEpoch?: number } = {},
): Buffer {
  records.forEach((r, i) => validateIndexRecord(r, `record ${i + 1} (${r.name}-${r.version})`));
  const text = Buffer.from(formatIndexText(sortIndexRecords(records)), "utf8");
  const desc = Buffer.from(opts.description ?? "", "utf8");
  const mtime = opts.sourceDateEpoch ?? 0;
  const parts: Uint8Array[] = [];
  for (const [name, body] of [
    ["DESCRIPTION", desc],
    ["APKINDEX", text],
  ] as const) {
    parts.push(
      encodeHeader({ path: name, type: "file", mode: 0o644, uid: 0, gid: 0, size: body.length, mtime }),
      body,
      new Uint8Array(padding(body.length)),
    );
  }
  parts.push(ZERO_BLOCK, ZERO_BLOCK);
  return gzipMember(Buffer.concat(parts));
}

/** A complete APKINDEX.tar.gz. */
export function buildIndex(records: readonly IndexRecord[], opts: BuildIndexOptions = {}): Buffer {
  const body = buildIndexBody(records, opts);
  return signIndexBody(body, opts.signingKeys ?? [], opts);
}

export function signIndexBody(body: Buffer, keys: SigningKey[], opts: SignOptions = {}): Buffer {
  if (keys.length === 0) return body;
  return Buffer.concat([buildSignatureMember(body, keys, opts), body]);
}

/** Merge: same name+version replaced by the incoming record, others kept. */
export function mergeIndexRecords(existing: readonly IndexRecord[], incoming: readonly IndexRecord[]): IndexRecord[] {
  const key = (r: IndexRecord) => `${r.name}\u0000${r.version}`;
  const map = new Map<string, IndexRecord>();
  for (const r of existing) map.set(key(r), r);
  for (const r of incoming) map.set(key(r), r);
  return sortIndexRecords([...map.values()]);
}

export { formatIndexText, parseIndexText };
