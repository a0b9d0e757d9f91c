// checkRepository: a consumer's audit of a published repository, over the
// same fetch path apk-style consumers use: the index signature, every listed
// package present with the index's size, C: and datahash, every
// dependency satisfiable, and no so:/cmd: name provided by two packages
// without a provider priority. Reports every problem, not just the first.

import { rm } from "node:fs/promises";
import type { IndexRecord, Keyring } from "@kiln/apk";
import type { Fetcher } from "../fetch.js";
import { fetchPackage, loadIndex } from "../repository.js";
import { duplicateProviders, formatDuplicateProvider } from "../index-policy.js";
import { formatUnsatisfied, unsatisfiedDependencies } from "./deps.js";
import { cleanStaleTempDirs, makeTempDir, removeTempDir } from "./tempdir.js";

export interface CheckOptions {
  keyring: Keyring;
  archs: string[];
  fetcher?: Fetcher;
  upstream?: (arch: string) => Promise<IndexRecord[]>;
  concurrency?: number;
  onProgress?: (line: string) => void;
}

export interface ArchCheck {
  arch: string;
  packages: number;
  checked: number;
  problems: string[];
}

export interface CheckReport {
  url: string;
  ok: boolean;
  archs: ArchCheck[];
}

export async function checkRepository(url: string, opts: CheckOptions): Promise<CheckReport> {
  await cleanStaleTempDirs("kiln-check-").catch(() => undefined);
  const cacheDir = await makeTempDir("kiln-check-");
  const report: CheckReport = { url, ok: true, archs: [] };
  try {
    for (const arch of opts.archs) {
      const ac: ArchCheck = { arch, packages: 0, checked: 0, problems: [] };
      report.archs.push(ac);
      const ctx = { keyring: opts.keyring, cacheDir, ...(opts.fetcher ? { fetcher: opts.fetcher } : {}) };
      let loaded;
      try {
        loaded = await loadIndex({ url }, arch, ctx);
      } catch (e) {
        ac.problems.push(`${arch}: ${(e as Error).message}`);
        continue;
      }
      ac.packages = loaded.packages.length;
      opts.onProgress?.(`${arch}/APKINDEX.tar.gz: ${loaded.trust}, ${loaded.packages.length} packages`);
      let next = 0;
      const worker = async () => {
        while (next < loaded.packages.length) {
          const pkg = loaded.packages[next++]!;
          const id = `${pkg.record.name}-${pkg.record.version}`;
          try {
            if (!pkg.record.checksum) throw new Error(`${pkg.url}: no C: in the index`);
            if (pkg.record.fileSize === undefined) throw new Error(`${pkg.url}: no S: in the index`);
            const path = await fetchPackage(pkg, ctx);
            await rm(path, { force: true });
            ac.checked++;
            opts.onProgress?.(`${arch}/${id}.apk: OK`);
          } catch (e) {
            ac.problems.push(`${arch}/${id}.apk: ${(e as Error).message}`);
          }
        }
      };
      await Promise.all(
        Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 6, loaded.packages.length)) }, worker),
      );
      const upstream = opts.upstream ? await opts.upstream(arch) : [];
      for (const u of unsatisfiedDependencies(loaded.index.records, upstream, arch))
        ac.problems.push(`unsatisfiable: ${formatUnsatisfied(u)}`);
      for (const d of duplicateProviders(loaded.index.records))
        ac.problems.push(`duplicate provider: ${formatDuplicateProvider(d)}`);
      ac.problems.sort();
    }
  } finally {
    await removeTempDir(cacheDir);
  }
  report.ok = report.archs.every((a) => a.problems.length === 0);
  return report;
}
