// Every new package read and verified in full, and re-signed into a private temporary directory when signed by another key.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, stat } from "node:fs/promises";
import { assertPathComponent, joinUnder, UnsafePathError } from "@kiln/core";
import {
  ApkError,
  checkSignature,
  openPackage,
  resignPackage,
  validateIndexRecord,
  type IndexRecord,
  type SigningKey,
} from "@kiln/apk";
import { PublishError } from "./errors.js";
import { keyring } from "./keys.js";
import type { PlannedPackage } from "./plan.js";
import { idOf } from "./remote.js";

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest("hex");
}

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

/**
 * Read a local package in full (C: against the local index, datahash, the
 * record it gives), re-signing a copy in `tmp` when it is not signed by `key`
 * alone. Writes nothing but that copy.
 */
export async function preparePackage(p: PlannedPackage, key: SigningKey, tmp: string): Promise<Prepared> {
  const staged = stagingPath(tmp, p.arch, p.id);
  let keep: boolean;
  let record: IndexRecord;
  const reader = await openPackage(createReadStream(p.file), { subject: p.file }).catch((e: unknown) => {
    if (e instanceof ApkError) throw new PublishError(e.message, "LOCAL_REPO", [], { cause: e });
    throw e;
  });
  try {
    if (reader.head.checksum !== p.checksum)
      throw new PublishError(
        `${p.file}: C:${reader.head.checksum} differs from its local index (C:${p.checksum}); re-run kiln index`,
        "LOCAL_REPO",
      );
    if (reader.head.info.dataHash === undefined)
      throw new PublishError(`${p.file}: no datahash in .PKGINFO`, "LOCAL_REPO");
    await reader.drain();
    keep =
      reader.head.signatures.length === 1 &&
      checkSignature(reader.head.signatures, reader.head.controlMember, keyring(key)).verdict === "OK";
    record = { ...reader.head.info, extra: [], checksum: reader.head.checksum, unknownFields: [] };
    delete record.dataHash;
  } catch (e) {
    if (e instanceof ApkError) throw new PublishError(e.message, "LOCAL_REPO", [], { cause: e });
    throw e;
  } finally {
    await reader.close();
  }
  if (idOf(record) !== p.id)
    throw new PublishError(
      `${p.file}: contains ${idOf(record)}, but its local index lists it as ${p.id}; re-run kiln index`,
      "LOCAL_REPO",
    );
  if (record.arch !== p.arch)
    throw new PublishError(`${p.file}: a package for arch ${record.arch}, listed under ${p.arch}/`, "LOCAL_REPO");
  let path = p.file;
  if (!keep) {
    path = staged;
    await copyFile(p.file, path);
    await resignPackage(path, [key], "RSA256");
  }
  const size = (await stat(path)).size;
  record.fileSize = size;
  try {
    validateIndexRecord(record, p.file);
  } catch (e) {
    if (e instanceof ApkError)
      throw new PublishError(`${e.message}: the published index could not hold it`, "LOCAL_REPO", [], { cause: e });
    throw e;
  }
  return { path, size, sha256: await sha256File(path), record, resigned: !keep };
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
