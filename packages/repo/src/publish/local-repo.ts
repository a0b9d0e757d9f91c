// The repository being published from: OUT/ARCH/APKINDEX.tar.gz and the
// packages it lists. The local index says what to publish; the packages are
// read in full only when they are actually uploaded. Every name, version and
// arch the index gives must be one plain path segment: they become local
// paths, staging file names and keys in the target.

import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { assertPathComponent, joinUnder } from "@kiln/core";
import { ApkError, readIndex, type IndexRecord } from "@kiln/apk";
import { packageFileName } from "../repository.js";
import { PublishError } from "./errors.js";
import { idOf, INDEX_NAME } from "./remote.js";

export interface LocalPackage {
  id: string;
  file: string;
  record: IndexRecord;
}

export interface LocalArch {
  arch: string;
  dir: string;
  packages: LocalPackage[];
  description: string;
  /** .apk files in the directory that the local index does not list (not published). */
  unlisted: string[];
}

function checkArchName(arch: string, where: string): void {
  try {
    assertPathComponent(arch, "architecture");
  } catch (e) {
    throw new PublishError(`${where}: ${(e as Error).message}`, "LOCAL_REPO", [], { cause: e });
  }
}

export async function readLocalRepository(out: string, archs?: string[]): Promise<LocalArch[]> {
  for (const a of archs ?? []) checkArchName(a, "--arch");
  let names: string[];
  try {
    names = (await readdir(out)).sort();
  } catch (e) {
    throw new PublishError(
      `${out}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (e as Error).message}`,
      "LOCAL_REPO",
      [],
      { cause: e },
    );
  }
  const result: LocalArch[] = [];
  for (const arch of names) {
    if (archs && !archs.includes(arch)) continue;
    checkArchName(arch, join(out, arch));
    const dir = join(out, arch);
    const indexPath = join(dir, INDEX_NAME);
    const st = await stat(indexPath).catch(() => undefined);
    if (!st?.isFile()) continue;
    let records: IndexRecord[];
    let description: string;
    try {
      const idx = await readIndex(await readFile(indexPath), { subject: indexPath });
      records = idx.records;
      description = idx.description;
    } catch (e) {
      if (e instanceof ApkError) throw new PublishError(e.message, "LOCAL_REPO", [], { cause: e });
      throw e;
    }
    const packages: LocalPackage[] = [];
    const seen = new Set<string>();
    for (const [i, record] of records.entries()) {
      let fileName: string;
      try {
        fileName = packageFileName(record);
      } catch (e) {
        throw new PublishError(`${indexPath}: record ${i + 1}: ${(e as Error).message}`, "LOCAL_REPO", [], {
          cause: e,
        });
      }
      const id = idOf(record);
      const file = joinUnder(dir, { value: fileName, what: "package file name" });
      if (seen.has(id)) throw new PublishError(`${indexPath}: lists ${id} twice`, "LOCAL_REPO");
      seen.add(id);
      if (record.arch !== arch)
        throw new PublishError(
          `${indexPath}: ${id} has A:${record.arch}, but sits in ${arch}/ (apk downloads from REPO/A/)`,
          "LOCAL_REPO",
        );
      if (!record.checksum) throw new PublishError(`${indexPath}: ${id} has no C: field`, "LOCAL_REPO");
      const fst = await stat(file).catch(() => undefined);
      if (!fst?.isFile()) throw new PublishError(`${file}: listed in ${indexPath} but missing`, "LOCAL_REPO");
      if (record.fileSize !== undefined && fst.size !== record.fileSize) {
        throw new PublishError(
          `${file}: ${fst.size} bytes, but ${indexPath} says ${record.fileSize} (S:); re-run kiln index`,
          "LOCAL_REPO",
        );
      }
      packages.push({ id, file, record });
    }
    const unlisted = (await readdir(dir)).filter((n) => n.endsWith(".apk") && !seen.has(n.slice(0, -4))).sort();
    result.push({ arch, dir, packages, description, unlisted });
  }
  if (archs) {
    const missing = archs.filter((a) => !result.some((r) => r.arch === a));
    if (missing.length)
      throw new PublishError(`${out}: no ${missing.map((a) => `${a}/${INDEX_NAME}`).join(", ")}`, "LOCAL_REPO");
  }
  if (result.length === 0)
    throw new PublishError(`${out}: no ARCH/${INDEX_NAME} found (make one with kiln index)`, "LOCAL_REPO");
  return result;
}
