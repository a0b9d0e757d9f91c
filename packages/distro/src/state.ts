// What exists already, for one architecture: the local repository's index
// and build keys, the upstream repositories' packages (and their build keys,
// when the upstream is this distribution's published repository), and the
// records of the images built so far. Loading is the only I/O; everything
// computed from it (graph, plan) is pure.

import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { Keyring, parsePublicKey, readIndex, type IndexRecord } from "@kiln/apk";
import {
  DefaultFetcher,
  joinUrl,
  loadRepositories,
  parseRepositoryRef,
  readAll,
  type Fetcher,
  type RepoPackage,
  type RepositoryRef,
} from "@kiln/repo";
import type { Distro } from "./config.js";
import { KEYS_FILE, KeyStore, parseKeyRecords, type KeyRecord } from "./keys.js";
import type { RecipeNode } from "./recipes.js";

export interface RepoState {
  arch: string;
  /** The local repository (OUT). */
  outDir: string;
  /** Its index records for this arch (empty before the first build). */
  local: IndexRecord[];
  /** The bootstrap repository's records (OUT/bootstrap/ARCH, see stage0-repo.ts): stage-0 packages, which builds use and nothing publishes. */
  stage0?: IndexRecord[];
  /** Packages of the upstream repositories and of repositories recipes name, in that order. */
  upstream: RepoPackage[];
  /** Build keys of the local repository. */
  keys: Map<string, KeyRecord>;
  /** Build keys found beside upstream repositories (a published copy of this distribution). */
  upstreamKeys: Map<string, KeyRecord>;
  /** Image records (OUT/images/.kiln-images.json). */
  images: Map<string, ImageRecord>;
}

export interface ImageRecord {
  name: string;
  /** sha256 of the config file. */
  config: string;
  /** Per arch: identities of the installed packages. */
  packages: Record<string, string[]>;
  digest: string;
  /** Registry references pushed → the digest pushed there. */
  pushed: Record<string, string>;
}

export const IMAGES_FILE = ".kiln-images.json";

/** OUT/bootstrap: the stage-0 packages' repository (OUT/bootstrap/ARCH/APKINDEX.tar.gz, see stage0-repo.ts). */
export const BOOTSTRAP_REPO_DIR = "bootstrap";

export function bootstrapRepoDir(outDir: string): string {
  return join(outDir, BOOTSTRAP_REPO_DIR);
}

export function localRepoRef(outDir: string): RepositoryRef {
  return { url: outDir };
}

/** The packages of the local repository and of its bootstrap repository, in that order. */
export function localPackages(state: Pick<RepoState, "local" | "stage0" | "outDir" | "arch">): RepoPackage[] {
  const of = (dir: string, recs: readonly IndexRecord[]) => {
    const repo = localRepoRef(dir);
    return recs.map((record) => ({
      record,
      repo,
      url: joinUrl(dir, `${record.arch || state.arch}/${record.name}-${record.version}.apk`),
    }));
  };
  return [...of(state.outDir, state.local), ...of(bootstrapRepoDir(state.outDir), state.stage0 ?? [])];
}

/** Read keys (files or URLs) into name/PEM pairs. */
export async function readKeys(
  paths: string[],
  fetcher: Fetcher = new DefaultFetcher(),
): Promise<Array<{ name: string; pem: Buffer }>> {
  const out = [];
  for (const k of paths) {
    const r = await fetcher.get(k);
    if (r.status !== "ok") throw new Error(`${k}: not modified`);
    out.push({ name: basename(k.replace(/[?#].*$/, "")), pem: await readAll(r.body) });
  }
  return out;
}

export async function readLocalIndex(outDir: string, arch: string): Promise<IndexRecord[]> {
  const file = join(outDir, arch, "APKINDEX.tar.gz");
  const bytes = await readFile(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw e;
  });
  if (!bytes) return [];
  return (await readIndex(bytes, { subject: file })).records;
}

export async function readImageRecords(outDir: string): Promise<Map<string, ImageRecord>> {
  const text = await readFile(join(outDir, "images", IMAGES_FILE), "utf8").catch(() => "{}");
  try {
    return new Map(Object.entries(JSON.parse(text) as Record<string, ImageRecord>));
  } catch {
    return new Map();
  }
}

export interface LoadStateOptions {
  cacheDir?: string;
  fetcher?: Fetcher;
  /** Trust these keys for the local repository's index too (not checked: kiln wrote it). */
  allowUntrusted?: boolean;
  /** Skip the upstream repositories (a plan from local state only). */
  offline?: boolean;
}

export async function loadRepoState(
  distro: Distro,
  arch: string,
  recipes: RecipeNode[],
  opts: LoadStateOptions = {},
): Promise<RepoState> {
  const fetcher = opts.fetcher ?? new DefaultFetcher();
  const keysStore = new KeyStore(join(distro.outDir, arch));
  const [local, stage0, keys, images] = await Promise.all([
    readLocalIndex(distro.outDir, arch),
    readLocalIndex(bootstrapRepoDir(distro.outDir), arch),
    keysStore.load(),
    readImageRecords(distro.outDir),
  ]);
  let upstream: RepoPackage[] = [];
  const upstreamKeys = new Map<string, KeyRecord>();
  const repoSet = [...new Set([...recipes.flatMap((r) => r.repositories), ...distro.upstream.repositories])];
  if (!opts.offline && repoSet.length) {
    const keyring = new Keyring();
    for (const k of await readKeys(
      [...new Set([...distro.upstream.keyring, ...recipes.flatMap((r) => r.keyring)])],
      fetcher,
    ))
      keyring.add(k.name, parsePublicKey(k.pem, k.name));
    const refs = repoSet.map(parseRepositoryRef);
    upstream = (
      await loadRepositories(refs, arch, {
        keyring,
        fetcher,
        ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
        ...(opts.allowUntrusted ? { allowUntrusted: true } : {}),
      })
    ).packages;
    // A published copy of this distribution carries its build keys beside the index.
    for (const ref of refs) {
      try {
        const r = await fetcher.get(joinUrl(ref.url, `${arch}/${KEYS_FILE}`));
        if (r.status !== "ok") continue;
        for (const [k, v] of parseKeyRecords((await readAll(r.body)).toString("utf8")))
          if (!upstreamKeys.has(k)) upstreamKeys.set(k, v);
      } catch {
        // No keys there: an ordinary upstream repository.
      }
    }
  }
  return { arch, outDir: distro.outDir, local, stage0, upstream, keys, upstreamKeys, images };
}

/** The build of a recipe that its key record describes and that the repository still holds, byte for byte. */
export interface CurrentBuild {
  record: KeyRecord;
  packages: RepoPackage[];
  where: "local" | "upstream";
}

function matchRecord(rec: KeyRecord, pool: Map<string, RepoPackage>): RepoPackage[] | undefined {
  const out: RepoPackage[] = [];
  for (const p of rec.packages) {
    const rp = pool.get(`${p.name}\0${p.version}`);
    if (!rp || rp.record.checksum !== p.checksum) return undefined;
    out.push(rp);
  }
  return out.length ? out : undefined;
}

/** For each recipe, its current build (local first, else a published one), if any. */
export function currentBuilds(state: RepoState, recipes: RecipeNode[]): Map<string, CurrentBuild> {
  const local = new Map<string, RepoPackage>();
  for (const p of localPackages(state)) local.set(`${p.record.name}\0${p.record.version}`, p);
  const upstream = new Map<string, RepoPackage>();
  for (const p of state.upstream)
    if (!upstream.has(`${p.record.name}\0${p.record.version}`))
      upstream.set(`${p.record.name}\0${p.record.version}`, p);
  const out = new Map<string, CurrentBuild>();
  for (const r of recipes) {
    const lk = state.keys.get(r.name);
    const lp = lk && lk.arch === state.arch ? matchRecord(lk, local) : undefined;
    if (lk && lp) {
      out.set(r.name, { record: lk, packages: lp, where: "local" });
      continue;
    }
    const uk = state.upstreamKeys.get(r.name);
    const up = uk && uk.arch === state.arch ? matchRecord(uk, upstream) : undefined;
    if (uk && up) out.set(r.name, { record: uk, packages: up, where: "upstream" });
  }
  return out;
}
