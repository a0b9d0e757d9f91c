// File-level operations: tell a package from an index, give apk's verdict,
// re-sign a package in place, and make an index record from a package file.

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { replaceAtomic } from "@kiln/core/base";
import { ApkError } from "./errors.js";
import { openIndex } from "./apkindex.js";
import type { IndexRecord } from "./index-text.js";
import type { Keyring, SignatureType, SigningKey } from "./keys.js";
import { parseSignatureName } from "./keys.js";
import { MemberStream } from "./member-stream.js";
import { openPackage, type PackageReader } from "./package-read.js";
import { joinFiles } from "./package-write.js";
import { buildSignatureMember, checkSignature, type Verdict } from "./signature.js";
import { readHeader } from "./tar-read.js";

export type FileKind = "package" | "index";

export interface VerifyReport {
  file: string;
  kind: FileKind | "unknown";
  verdict: Verdict;
  reason: string;
  keyName?: string;
}

/**
 * Look at the first entry after the signatures to tell a package from an
 * index. This inflates one bounded slice of the member after the signatures
 * (a package is verified by inflating its control member anyway); an index's
 * body is otherwise not inflated before its signature is checked.
 */
export async function sniffKind(path: string): Promise<FileKind> {
  const ms = new MemberStream(createReadStream(path), { subject: path, maxMemberSize: () => 64 * 1024 * 1024 });
  try {
    let r = await readHeader(ms);
    if (r.kind === "entry" && parseSignatureName(r.entry.rawPath)) {
      while (r.kind === "entry") {
        await ms.read(Math.ceil(r.entry.size / 512) * 512, r.entry.rawPath);
        r = await readHeader(ms);
      }
      if (r.kind !== "member-end" || !(await ms.nextMember()))
        throw new ApkError("TRUNCATED", `${path}: nothing after the signature member`, { subject: path });
      r = await readHeader(ms);
    }
    if (r.kind !== "entry") throw new ApkError("BAD_ARCHIVE", `${path}: no entries`, { subject: path });
    if (r.entry.rawPath === ".PKGINFO") return "package";
    if (r.entry.rawPath === "APKINDEX" || r.entry.rawPath === "DESCRIPTION") return "index";
    throw new ApkError(
      "BAD_ARCHIVE",
      `${path}: neither a package (.PKGINFO) nor an index (APKINDEX): first entry is ${JSON.stringify(r.entry.rawPath)}`,
      { subject: path },
    );
  } finally {
    await ms.close().catch(() => undefined);
  }
}

function verdictOf(e: unknown): Verdict {
  if (e instanceof ApkError)
    return e.code === "BAD_SIGNATURE" ? "BAD signature" : e.code === "UNTRUSTED" ? "UNTRUSTED" : "BAD archive";
  return "BAD archive";
}

/** apk's verdict for one file, as `apk verify` gives it. Never throws for bad input. */
export async function verifyFile(path: string, keyring: Keyring): Promise<VerifyReport> {
  let kind: FileKind | "unknown" = "unknown";
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new ApkError("BAD_ARCHIVE", `${path}: not a regular file`, { subject: path });
    kind = await sniffKind(path);
    if (kind === "index") {
      // The signature is decided on the compressed bytes; only a trusted body is inflated and checked.
      const head = await openIndex(createReadStream(path), { subject: path });
      const c = head.check(keyring);
      if (c.verdict === "OK") await head.read();
      return { file: path, kind, ...c };
    }
    const reader = await openPackage(createReadStream(path), { subject: path });
    try {
      const c = checkSignature(reader.head.signatures, reader.head.controlMember, keyring);
      if (c.verdict !== "OK") return { file: path, kind, ...c };
      if (reader.head.info.dataHash === undefined) {
        return {
          file: path,
          kind,
          verdict: "BAD archive",
          reason: "no datahash in .PKGINFO (pre-2.x packages are not supported)",
        };
      }
      await reader.drain();
      return { file: path, kind, ...c };
    } finally {
      await reader.close();
    }
  } catch (e) {
    if (e instanceof ApkError) return { file: path, kind, verdict: verdictOf(e), reason: e.message };
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT" || err.code === "EACCES" || err.code === "EISDIR") {
      return { file: path, kind, verdict: "BAD archive", reason: `${path}: ${err.message}` };
    }
    throw e;
  }
}

/** Read a package fully, checking its structure and datahash; the caller closes nothing. */
export async function inspectPackageFile(path: string): Promise<{ reader: PackageReader; size: number }> {
  const size = (await stat(path)).size;
  return { reader: await openPackage(createReadStream(path), { subject: path }), size };
}

/** The index record for a package file; reads the whole package to check it. */
export async function indexRecordForPackage(path: string): Promise<IndexRecord> {
  const { reader, size } = await inspectPackageFile(path);
  try {
    await reader.drain();
    const { info, checksum } = reader.head;
    const rec: IndexRecord = { ...info, extra: [], checksum, fileSize: size, unknownFields: [] };
    delete rec.dataHash;
    return rec;
  } finally {
    await reader.close();
  }
}

/**
 * Replace a package's signatures with new ones, in place and atomically. The
 * data is checked against its datahash first: re-signing must not bless a
 * corrupt package.
 */
export async function resignPackage(
  path: string,
  keys: SigningKey[],
  type: SignatureType = "RSA256",
  /** The signature member's mtime, as a build gives it (default 0). */
  sourceDateEpoch?: number,
): Promise<{ size: number; checksum: string }> {
  const { reader } = await inspectPackageFile(path);
  let offset: number;
  let control: Buffer;
  let checksum: string;
  try {
    if (reader.head.info.dataHash === undefined)
      throw new ApkError("BAD_ARCHIVE", `${path}: no datahash; cannot re-sign the control member alone`, {
        subject: path,
      });
    await reader.drain();
    control = reader.head.controlMember;
    checksum = reader.head.checksum;
    offset = (reader.head.signatureMember?.length ?? 0) + control.length;
  } finally {
    await reader.close();
  }
  const sig = buildSignatureMember(control, keys, {
    type,
    ...(sourceDateEpoch !== undefined ? { sourceDateEpoch } : {}),
  });
  await replaceAtomic(path, (tmp) => joinFiles(tmp, [sig, control], path, offset));
  return { size: (await stat(path)).size, checksum };
}
