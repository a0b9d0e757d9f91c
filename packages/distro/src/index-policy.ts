// The published index's policy, on the distribution's side. Builds replace
// the records they supersede in OUT/ARCH/APKINDEX.tar.gz as they are merged
// (@kiln/repo supersedeRecords: the newest build of each package, and of each
// recipe only the packages it still produces). The superseded files stay
// beside the index while the round runs (a guest being assembled may still be
// fetching one); after the round they move to OUT/superseded/ARCH/, where the
// newest KEEP_SUPERSEDED builds of each package are kept (the rest are
// deleted; removing OUT/superseded is always safe). Then the main index is
// checked: no two packages may provide the same so:/cmd: name unless each
// has a provider_priority.

import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  buildIndex,
  compareVersions,
  indexRecordFromHead,
  isValidVersion,
  readIndex,
  type IndexRecord,
  type SigningKey,
} from "@kiln/apk";
import { joinUnder, writeFileAtomic } from "@kiln/core";
import {
  duplicateProviders,
  formatDuplicateProvider,
  newestBuilds,
  originOf,
  type DuplicateProvider,
} from "@kiln/repo";

/** Superseded builds kept per package in OUT/superseded/ARCH. */
export const KEEP_SUPERSEDED = 2;

export const SUPERSEDED_DIR = "superseded";

export interface IndexProblem {
  arch: string;
  kind: "duplicate-provider";
  message: string;
  duplicate: DuplicateProvider;
}

export interface SupersededMove {
  arch: string;
  /** Records the index still listed although a newer build of their package or recipe is indexed (an index from before this policy), dropped. */
  dropped: string[];
  /** Files moved from OUT/ARCH into OUT/superseded/ARCH. */
  moved: string[];
  /** Files deleted from OUT/superseded/ARCH (beyond the newest kept). */
  removed: string[];
}

async function indexRecords(dir: string): Promise<IndexRecord[] | undefined> {
  const file = join(dir, "APKINDEX.tar.gz");
  const bytes = await readFile(file).catch(() => undefined);
  return bytes ? (await readIndex(bytes, { subject: file })).records : undefined;
}

/** NAME and VERSION of a package file name when VERSION is a valid apk version with a release. */
function splitPackageFile(file: string, names: ReadonlySet<string>): { name: string; version: string } | undefined {
  if (!file.endsWith(".apk")) return undefined;
  const base = file.slice(0, -4);
  // The longest known name that leaves a valid version: zlib-bootstrap-1.0-r0 is not a zlib.
  for (let i = base.lastIndexOf("-r"); i > 0; i = base.lastIndexOf("-", i - 1)) {
    const name = base.slice(0, i);
    const version = base.slice(i + 1);
    if (names.has(name) && /-r\d+$/.test(version) && isValidVersion(version)) return { name, version };
  }
  return undefined;
}

async function moveWithProvenance(from: string, to: string, file: string): Promise<void> {
  await rename(join(from, file), join(to, file));
  await rename(join(from, `${file}.intoto.json`), join(to, `${file}.intoto.json`)).catch(() => undefined);
}

/**
 * Move the package files of OUT/ARCH that its index no longer lists but that
 * belong to an indexed package's name or origin into OUT/superseded/ARCH, and
 * keep the newest `keep` builds of each package there. Files of packages the
 * index does not know (a stray .apk) stay where they are.
 */
export async function moveSuperseded(
  outDir: string,
  arch: string,
  index: { signingKey: SigningKey; sourceDateEpoch: number },
  keep = KEEP_SUPERSEDED,
): Promise<SupersededMove> {
  const dir = joinUnder(outDir, { value: arch, what: "architecture" });
  const result: SupersededMove = { arch, dropped: [], moved: [], removed: [] };
  let records = await indexRecords(dir);
  if (!records) return result;
  const newest = newestBuilds(records);
  if (newest.superseded.length) {
    // Runs between rounds, when no build writes the index.
    await writeFileAtomic(
      join(dir, "APKINDEX.tar.gz"),
      buildIndex(newest.records, { signingKeys: [index.signingKey], sourceDateEpoch: index.sourceDateEpoch }),
    );
    result.dropped = newest.superseded.map((r) => `${r.name}-${r.version}`).sort();
    records = newest.records;
  }
  const listed = new Set(records.map((r) => `${r.name}-${r.version}.apk`));
  const names = new Set(records.map((r) => r.name));
  const origins = new Set(records.map(originOf));
  const target = joinUnder(outDir, SUPERSEDED_DIR, { value: arch, what: "architecture" });
  for (const f of (await readdir(dir)).sort()) {
    if (!f.endsWith(".apk") || listed.has(f)) continue;
    let rec: IndexRecord;
    try {
      rec = await indexRecordFromHead(join(dir, f));
    } catch {
      continue; // not a package kiln can read: not ours to move
    }
    if (`${rec.name}-${rec.version}.apk` !== f || !(names.has(rec.name) || origins.has(originOf(rec)))) continue;
    await mkdir(target, { recursive: true });
    await moveWithProvenance(dir, target, f);
    result.moved.push(f);
  }
  result.removed = await pruneSuperseded(target, keep);
  return result;
}

/** Keep the newest `keep` versions of each package in a superseded directory. */
async function pruneSuperseded(dir: string, keep: number): Promise<string[]> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith(".apk"));
  const heads = new Map<string, string>();
  for (const f of files) {
    const rec = await indexRecordFromHead(join(dir, f)).catch(() => undefined);
    if (rec && `${rec.name}-${rec.version}.apk` === f) heads.set(f, rec.name);
  }
  const byName = new Map<string, Array<{ file: string; version: string }>>();
  for (const [f, name] of heads) {
    const parsed = splitPackageFile(f, new Set([name]));
    if (!parsed) continue;
    (byName.get(name) ?? byName.set(name, []).get(name)!).push({ file: f, version: parsed.version });
  }
  const removed: string[] = [];
  for (const list of byName.values()) {
    list.sort((a, b) => compareVersions(b.version, a.version));
    for (const old of list.slice(Math.max(0, keep))) {
      await rm(join(dir, old.file), { force: true });
      await rm(join(dir, `${old.file}.intoto.json`), { force: true });
      removed.push(old.file);
    }
  }
  return removed.sort();
}

/** The problems of OUT/ARCH's index: so:/cmd: names provided twice without a provider priority. */
export async function checkMainIndex(outDir: string, arch: string): Promise<IndexProblem[]> {
  const records = await indexRecords(joinUnder(outDir, { value: arch, what: "architecture" }));
  if (!records) return [];
  return duplicateProviders(records).map((d) => ({
    arch,
    kind: "duplicate-provider",
    message: `${arch}/APKINDEX.tar.gz: ${formatDuplicateProvider(d)}`,
    duplicate: d,
  }));
}
