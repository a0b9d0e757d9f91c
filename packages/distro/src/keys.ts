// Build keys: what a package was built from. A key is the recipe's own hash
// (compiled recipe, default environment, local sources) plus the exact
// packages (`C:` identities) its build guest resolved to. Keys are recorded
// beside the repository in OUT/ARCH/.kiln-build-keys.jsonl, one JSON object
// per line, appended after each successful build (so a crash mid-run loses
// nothing) and compacted to one sorted line per recipe at the end of a run.
//
// Why a side file and not a field in APKINDEX: index field letters belong to
// apk-tools (a lowercase letter kiln picked today may mean something to apk
// 3 tomorrow), a key per index record cannot hold the per-recipe data the
// plan explains itself with (which file changed, which dependency moved),
// and re-signing or merging an index must not be able to lose it. A record
// only counts while the index still lists every package it names with the
// same `C:`; anything else is treated as not built.

import { createHash } from "node:crypto";
import { appendFile, mkdir, readFile } from "node:fs/promises";
import { writeFileAtomic } from "@kiln/core";
import { join } from "node:path";

export const KEYS_FILE = ".kiln-build-keys.jsonl";

export interface BuiltPackage {
  name: string;
  version: string;
  checksum: string;
}

export interface KeyRecord {
  /** The recipe (its main package's name). */
  recipe: string;
  /** Recipe file, relative to the distribution root. */
  path: string;
  arch: string;
  /** The recipe's own version and epoch when built. */
  version: string;
  epoch: number;
  /** What was built: VERSION-rN, N possibly raised above the recipe's epoch. */
  fullVersion: string;
  /** sha256(own, environment): the build key. */
  key: string;
  own: string;
  files: Record<string, string>;
  /** Identities of the build guest's packages (`NAME-VERSION@C`), sorted; packages that stood in for a cycle are left out. */
  environment: string[];
  /** Recipes whose packages were taken as already published (cycle stand-ins) and are not part of the key. */
  standIns: string[];
  packages: BuiltPackage[];
}

export function identity(p: { name: string; version: string; checksum?: string | undefined }): string {
  return `${p.name}-${p.version}@${p.checksum ?? ""}`;
}

export function buildKey(own: string, environment: readonly string[]): string {
  return createHash("sha256")
    .update(`${own}\n${[...environment].sort().join("\n")}\n`)
    .digest("hex");
}

/** Parse a keys file: the last record per recipe wins; malformed lines are skipped. */
export function parseKeyRecords(text: string): Map<string, KeyRecord> {
  const out = new Map<string, KeyRecord>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as KeyRecord;
      if (typeof r.recipe === "string" && typeof r.key === "string" && Array.isArray(r.packages)) out.set(r.recipe, r);
    } catch {
      // A torn last line after a crash: ignore it.
    }
  }
  return out;
}

export function formatKeyRecords(records: Iterable<KeyRecord>): string {
  return [...records]
    .sort((a, b) => (a.recipe < b.recipe ? -1 : a.recipe > b.recipe ? 1 : 0))
    .map((r) => JSON.stringify(r) + "\n")
    .join("");
}

/** The keys of one repository architecture directory (OUT/ARCH). */
export class KeyStore {
  readonly file: string;
  private chain: Promise<unknown> = Promise.resolve();
  records = new Map<string, KeyRecord>();

  constructor(readonly dir: string) {
    this.file = join(dir, KEYS_FILE);
  }

  async load(): Promise<Map<string, KeyRecord>> {
    const text = await readFile(this.file, "utf8").catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return "";
      throw e;
    });
    this.records = parseKeyRecords(text);
    return this.records;
  }

  /** Append one record (serialised within the process; one write call per line). */
  append(rec: KeyRecord): Promise<void> {
    this.records.set(rec.recipe, rec);
    const p = this.chain.then(async () => {
      await mkdir(this.dir, { recursive: true });
      await appendFile(this.file, JSON.stringify(rec) + "\n");
    });
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Rewrite the file with one line per recipe, sorted: the same records give the same bytes. */
  compact(): Promise<void> {
    const p = this.chain.then(async () => {
      await mkdir(this.dir, { recursive: true });
      await writeFileAtomic(this.file, formatKeyRecords(this.records.values()), { fsync: true });
    });
    this.chain = p.catch(() => undefined);
    return p;
  }
}
