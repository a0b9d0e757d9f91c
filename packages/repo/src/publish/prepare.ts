// Every new package read and verified in full, and re-signed into a private temporary directory when signed by another key.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { assertPathComponent, joinUnder, UnsafePathError } from "@kiln/core";
import {
  ApkError,
  buildSignatureMember,
  checkSignature,
  openPackage,
  validateIndexRecord,
  type IndexRecord,
  type SigningKey,
} from "@kiln/apk";
import { PublishError } from "./errors.js";
import { keyring } from "./keys.js";
import type { PlannedPackage } from "./plan.js";
import { idOf } from "./remote.js";

export interface Prepared {
  path: string;
  size: number;
  sha256: string;
  record: IndexRecord;
  resigned: boolean;
}

/** Where the re-signed copy of a package is staged: `TMP/ARCH-NAME-VERSION.apk`, refused unless arch and id are plain path segments. */
export function stagingPath(tmp: string, arch: string, id: string): string {
  try {
    assertPathComponent(arch, "architecture");
    return joinUnder(tmp, { value: `${arch}-${id}.apk`, what: "staged package file name" });
  } catch (e) {
    if (e instanceof UnsafePathError)
      throw new PublishError(`refusing to stage ${JSON.stringify(`${arch}/${id}`)}: ${e.message}`, "LOCAL_REPO", [], {
        cause: e,
      });
    throw e;
  }
}

/** A package read and checked in full, before anything is written: what staging it needs. */
export interface Verified {
  p: PlannedPackage;
  record: IndexRecord;
  /** Signed by the publishing key alone: published as it is. */
  keep: boolean;
  /** The compressed control member, and where it starts in the file (the end of the signature member). */
  control: Buffer;
  controlOffset: number;
  /** SHA-256 of the file as read (the published bytes when kept). */
  fileSha256: string;
  /** SHA-256 of the data member as verified (.PKGINFO's datahash). */
  dataHash: string;
}

/** The chunks of a file, hashed as they pass. */
async function* hashed(path: string, h: ReturnType<typeof createHash>): AsyncGenerator<Uint8Array> {
  for await (const c of createReadStream(path, { highWaterMark: 256 * 1024 })) {
    h.update(c as Buffer);
    yield c as Buffer;
  }
}

const localError = (e: unknown): unknown =>
  e instanceof ApkError ? new PublishError(e.message, "LOCAL_REPO", [], { cause: e }) : e;

/**
 * Read a local package once, in full (C: against the local index, datahash,
 * the record it gives, a record the published index can hold). Writes nothing.
 */
export async function verifyPackage(p: PlannedPackage, key: SigningKey): Promise<Verified> {
  const h = createHash("sha256");
  const reader = await openPackage(hashed(p.file, h), { subject: p.file }).catch((e: unknown) => {
    throw localError(e);
  });
  let v: Omit<Verified, "fileSha256" | "dataHash">;
  let dataHash: string;
  try {
    const { head } = reader;
    if (head.checksum !== p.checksum)
      throw new PublishError(
        `${p.file}: C:${head.checksum} differs from its local index (C:${p.checksum}); re-run kiln index`,
        "LOCAL_REPO",
      );
    if (head.info.dataHash === undefined) throw new PublishError(`${p.file}: no datahash in .PKGINFO`, "LOCAL_REPO");
    dataHash = (await reader.drain()).dataHash;
    const record: IndexRecord = { ...head.info, extra: [], checksum: head.checksum, unknownFields: [] };
    delete record.dataHash;
    const keep =
      head.signatures.length === 1 &&
      checkSignature(head.signatures, head.controlMember, keyring(key)).verdict === "OK";
    v = { p, record, keep, control: head.controlMember, controlOffset: head.signatureMember?.length ?? 0 };
  } catch (e) {
    throw localError(e);
  } finally {
    await reader.close();
  }
  const { record } = v;
  if (idOf(record) !== p.id)
    throw new PublishError(
      `${p.file}: contains ${idOf(record)}, but its local index lists it as ${p.id}; re-run kiln index`,
      "LOCAL_REPO",
    );
  if (record.arch !== p.arch)
    throw new PublishError(`${p.file}: a package for arch ${record.arch}, listed under ${p.arch}/`, "LOCAL_REPO");
  record.fileSize = (await stat(p.file)).size;
  try {
    validateIndexRecord(record, p.file);
  } catch (e) {
    if (e instanceof ApkError)
      throw new PublishError(`${e.message}: the published index could not hold it`, "LOCAL_REPO", [], { cause: e });
    throw e;
  }
  return { ...v, fileSha256: h.digest("hex"), dataHash };
}

/**
 * Write `heads` then `tail` from `offset` to `out` (a private temporary file:
 * no fsync, it is uploaded and removed): the SHA-256 of what was written and of the tail alone.
 */
async function writeJoined(
  out: string,
  heads: Buffer[],
  tail: string,
  offset: number,
): Promise<{ sha256: string; tail: string }> {
  const h = createHash("sha256");
  const t = createHash("sha256");
  const fh = await open(out, "wx", 0o600);
  try {
    for (const b of heads) {
      h.update(b);
      await fh.write(b);
    }
    for await (const c of createReadStream(tail, { start: offset, highWaterMark: 256 * 1024 })) {
      h.update(c as Buffer);
      t.update(c as Buffer);
      await fh.write(c as Buffer);
    }
  } finally {
    await fh.close();
  }
  return { sha256: h.digest("hex"), tail: t.digest("hex") };
}

/**
 * What is uploaded for a verified package: the file itself when signed by
 * `key` alone, else a copy in `tmp` whose signature member is replaced by one
 * of `key` (control and data bytes as they were verified).
 */
export async function stagePackage(v: Verified, key: SigningKey, tmp: string): Promise<Prepared> {
  const { p } = v;
  const staged = stagingPath(tmp, p.arch, p.id);
  const record = { ...v.record };
  if (v.keep) return { path: p.file, size: record.fileSize!, sha256: v.fileSha256, record, resigned: false };
  const sig = buildSignatureMember(v.control, [key], { type: "RSA256" });
  // The verified control member, then the data member copied from the file and checked against the verified datahash.
  const w = await writeJoined(staged, [sig, v.control], p.file, v.controlOffset + v.control.length);
  if (w.tail !== v.dataHash)
    throw new PublishError(`${p.file}: changed while being published (its data no longer matches)`, "LOCAL_REPO");
  record.fileSize = (await stat(staged)).size;
  return { path: staged, size: record.fileSize, sha256: w.sha256, record, resigned: true };
}

/** verifyPackage then stagePackage. */
export async function preparePackage(p: PlannedPackage, key: SigningKey, tmp: string): Promise<Prepared> {
  stagingPath(tmp, p.arch, p.id); // refuse an unsafe name before reading anything
  return stagePackage(await verifyPackage(p, key), key, tmp);
}

export async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try {
        await fn(items[i]!);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (failed !== undefined) throw failed;
}
