// APKINDEX.tar.gz: a signature member, then one gzip member with a tar of
// DESCRIPTION and APKINDEX closed by end blocks. The signature covers every
// compressed byte after the signature member.

import { ApkError } from "./errors.js";
import { gzipMember } from "./gzip.js";
import { formatIndexText, parseIndexText, type IndexRecord } from "./index-text.js";
import { parseSignatureName, type Keyring, type SigningKey } from "./keys.js";
import { MemberStream } from "./member-stream.js";
import type { SignatureEntry } from "./package-read.js";
import { buildSignatureMember, checkSignature, type SignatureCheck, type SignOptions } from "./signature.js";
import { readBody, readHeader } from "./tar-read.js";
import { encodeHeader, padding, ZERO_BLOCK } from "./tar.js";
import { compareVersions } from "./version.js";
import { validateDependencyList, validateProvideList } from "./dependency.js";
import { isValidVersion } from "./version.js";

export const MAX_INDEX_SIZE = 1024 * 1024 * 1024;

export interface IndexFile {
  signatures: SignatureEntry[];
  /** Compressed bytes of the signature member, when signed. */
  signatureMember?: Buffer;
  /** Compressed bytes after the signature member: what the signatures cover. */
  body: Buffer;
  description: string;
  text: string;
  records: IndexRecord[];
  /** Names of entries other than DESCRIPTION and APKINDEX (apk ignores them; stricter readers do not). */
  otherEntries: string[];
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

/** Parse an APKINDEX.tar.gz. Structure errors throw ApkError; signatures are checked by `verifyIndex`. */
export async function readIndex(source: AsyncIterable<Uint8Array> | Uint8Array, opts: { subject?: string; maxSize?: number } = {}): Promise<IndexFile> {
  const subject = opts.subject ?? "APKINDEX.tar.gz";
  const max = opts.maxSize ?? MAX_INDEX_SIZE;
  const raw: Buffer[][] = [];
  const ms = new MemberStream(source instanceof Uint8Array ? once(source) : source, {
    subject,
    onCompressed: (m, bytes) => {
      (raw[m] ??= []).push(Buffer.from(bytes));
    },
    maxMemberSize: () => max,
  });
  try {
    const signatures: SignatureEntry[] = [];
    let r = await readHeader(ms);
    let bodyStart = 0;
    if (r.kind === "entry" && parseSignatureName(r.entry.rawPath)) {
      for (; r.kind !== "member-end"; r = await readHeader(ms)) {
        if (r.kind === "zero") throw new ApkError("BAD_ARCHIVE", `${subject}: end-of-archive blocks inside the signature member`, { subject });
        const sig = parseSignatureName(r.entry.rawPath);
        if (!sig) throw new ApkError("BAD_ARCHIVE", `${subject}: ${JSON.stringify(r.entry.rawPath)} shares the signature member`, { subject });
        signatures.push({ ...sig, signature: await readBody(ms, r.entry, 64 * 1024) });
      }
      if (!(await ms.nextMember())) throw new ApkError("TRUNCATED", `${subject}: ends after the signature member`, { subject });
      bodyStart = 1;
      r = await readHeader(ms);
    }
    let description: string | undefined;
    let text: string | undefined;
    const otherEntries: string[] = [];
    let zeros = 0;
    for (;;) {
      if (r.kind === "member-end") {
        // The index tar may in principle span members; the end blocks close it.
        if (!(await ms.nextMember())) break;
      } else if (r.kind === "zero") {
        zeros++;
        if (zeros === 2) {
          while (!(await ms.atMemberEnd())) {
            const z = await ms.readSome(65536, "padding");
            if (z.some((b) => b !== 0)) throw new ApkError("BAD_ARCHIVE", `${subject}: data after the end of the archive`, { subject });
          }
          if (await ms.nextMember()) throw new ApkError("BAD_ARCHIVE", `${subject}: unexpected gzip member after the index`, { subject });
          break;
        }
      } else {
        if (zeros) throw new ApkError("BAD_ARCHIVE", `${subject}: a single zero block inside the archive`, { subject });
        const e = r.entry;
        if (parseSignatureName(e.rawPath)) throw new ApkError("BAD_ARCHIVE", `${subject}: signature entry ${e.rawPath} after the signature member`, { subject });
        const body = await readBody(ms, e, max);
        if (e.rawPath === "APKINDEX") {
          if (text !== undefined) throw new ApkError("BAD_ARCHIVE", `${subject}: two APKINDEX entries`, { subject });
          text = body.toString("utf8");
        } else if (e.rawPath === "DESCRIPTION") description = body.toString("utf8");
        else otherEntries.push(e.rawPath);
      }
      r = await readHeader(ms);
    }
    if (zeros < 2) throw new ApkError("TRUNCATED", `${subject}: index archive ends without end-of-archive blocks`, { subject });
    if (text === undefined) throw new ApkError("BAD_ARCHIVE", `${subject}: no APKINDEX entry`, { subject });
    const records = parseIndexText(text, `${subject}: APKINDEX`);
    const idx: IndexFile = {
      signatures,
      body: Buffer.concat(raw.slice(bodyStart).flat()),
      description: description ?? "",
      text,
      records,
      otherEntries,
    };
    if (bodyStart === 1) idx.signatureMember = Buffer.concat(raw[0] ?? []);
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
  return [...records].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : compareVersions(a.version, b.version)));
}

/** Check what apk would silently mangle: bad versions and dependency tokens. */
export function validateIndexRecord(r: IndexRecord, where: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9+_.-]*$/.test(r.name)) throw new ApkError("INVALID_FIELD", `${where}: invalid package name ${JSON.stringify(r.name)}`, { subject: where });
  if (!isValidVersion(r.version)) throw new ApkError("INVALID_VERSION", `${where}: invalid version ${JSON.stringify(r.version)}`, { subject: where });
  if (!r.arch) throw new ApkError("INVALID_FIELD", `${where}: missing arch`, { subject: where });
  validateDependencyList(r.depends, `${where} D:`);
  validateProvideList(r.provides, `${where} p:`);
  validateDependencyList(r.installIf, `${where} i:`);
}

export interface BuildIndexOptions extends SignOptions {
  description?: string;
  signingKeys?: SigningKey[];
}

/** The unsigned body: one gzip member with DESCRIPTION and APKINDEX and end blocks. */
export function buildIndexBody(records: readonly IndexRecord[], opts: { description?: string; sourceDateEpoch?: number } = {}): Buffer {
  records.forEach((r, i) => validateIndexRecord(r, `record ${i + 1} (${r.name}-${r.version})`));
  const text = Buffer.from(formatIndexText(sortIndexRecords(records)), "utf8");
  const desc = Buffer.from(opts.description ?? "", "utf8");
  const mtime = opts.sourceDateEpoch ?? 0;
  const parts: Uint8Array[] = [];
  for (const [name, body] of [["DESCRIPTION", desc], ["APKINDEX", text]] as const) {
    parts.push(encodeHeader({ path: name, type: "file", mode: 0o644, uid: 0, gid: 0, size: body.length, mtime }), body, new Uint8Array(padding(body.length)));
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
