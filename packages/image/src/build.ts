// Building an image: resolve the config's packages from its signed
// repositories (or take them from a lock file), fetch and verify them, install
// them into a root, apply accounts/paths, and write the OCI output. Plan is
// `resolveImage` (pure over loaded indexes); `buildImage` does the I/O.

import { assertPathComponent, joinUnder, KilnError } from "@kiln/core";
import { readFile, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import { Keyring, parsePublicKey } from "@kiln/apk";
import {
  cleanStaleTempDirs,
  fetchPackages,
  loadRepositories,
  makeTempDir,
  parseRepositoryRef,
  removeTempDir,
  resolve,
  DefaultFetcher,
  type Fetcher,
  type RepoPackage,
  type RepositoryRef,
  type Resolution,
} from "@kiln/repo";
import { OCI_PLATFORM, type ImageConfig } from "./config.js";
import { applyAccounts, applyOsRelease, applyPaths, applyServices } from "./mutate.js";
import { applyCertificates, applyRuntimeKeyring, writeBundleChecksums } from "./trust.js";
import { writeOciImage, type ArchImage, type OciOutputFormat, type OciWriteResult } from "./oci/index.js";
import { ImageRoot } from "./root.js";
import { fileSha256s, imageSbom } from "./sbom.js";
import { baseArchImage, loadBase, resolveOnBase, seedBaseLinks } from "./base-build.js";
import type { BaseImage } from "./baseimage.js";

export interface ImageContext {
  /** Extra trusted keys: name → PEM. */
  extraKeys?: Array<{ name: string; pem: Buffer }>;
  extraRepositories?: string[];
  allowUntrusted?: boolean;
  cacheDir?: string;
  fetcher?: Fetcher;
  sourceDateEpoch?: number;
  /** purl namespace / distribution id for the SBOM. */
  distro?: string;
  /** Cap on each architecture's root (regular-file bytes); default KILN_MAX_ROOT_SIZE, else 16 GiB (see budget.ts). */
  maxRootBytes?: number;
  /** How to raise that cap, for the refusal. */
  raiseHint?: string;
  onProgress?: (msg: string) => void;
  /** Where else relative contents.baseimage paths are looked for (--include-paths), and the current directory. */
  includePaths?: string[];
  cwd?: string;
}

export interface LockEntry {
  name: string;
  version: string;
  url: string;
  repository: string;
  checksum: string;
  size?: number;
}

export interface LockFile {
  version: "kiln-lock/v1";
  config: { packages: string[]; repositories: string[] };
  contents: Record<string, LockEntry[]>;
}

export class ImageBuildError extends KilnError {
  constructor(
    message: string,
    readonly code: "LOCK_MISMATCH" | "KEYRING" | "OUTPUT" | "UNSUPPORTED" | "ACCOUNTS",
  ) {
    super(message);
    this.name = "ImageBuildError";
  }
}

async function loadKeys(
  cfg: ImageConfig,
  ctx: ImageContext,
  fetcher: Fetcher,
): Promise<{ ring: Keyring; keys: Array<{ name: string; pem: Buffer }> }> {
  const ring = new Keyring();
  const keys: Array<{ name: string; pem: Buffer }> = [];
  for (const k of cfg.keyring) {
    let pem: Buffer;
    try {
      const r = await fetcher.get(k);
      if (r.status !== "ok") throw new Error("not modified");
      const parts: Buffer[] = [];
      for await (const c of r.body) parts.push(Buffer.from(c));
      pem = Buffer.concat(parts);
    } catch (e) {
      throw new ImageBuildError(`${cfg.file}: contents.keyring: cannot read ${k}: ${(e as Error).message}`, "KEYRING");
    }
    const name = basename(k.replace(/[?#].*$/, ""));
    ring.add(name, parsePublicKey(pem, k));
    keys.push({ name, pem });
  }
  for (const k of ctx.extraKeys ?? []) {
    ring.add(k.name, parsePublicKey(k.pem, k.name));
    keys.push(k);
  }
  return { ring, keys };
}

function repoRefs(cfg: ImageConfig, ctx: ImageContext): RepositoryRef[] {
  return [...cfg.repositories, ...cfg.buildRepositories, ...(ctx.extraRepositories ?? [])].map(parseRepositoryRef);
}

export interface ResolvedImage {
  arch: string;
  /** The packages to install: with a base image, those the base does not have. */
  resolution: Resolution;
  /** contents.baseimage, verified, for this arch. */
  base?: BaseImage;
}

/** The keys apko reads that kiln cannot build yet, refused before anything is fetched. */
export function checkBuildable(cfg: ImageConfig): void {
  if (cfg.format === "erofs")
    throw new ImageBuildError(
      `${cfg.file}: format erofs (apko's experimental EROFS layers) is not supported by kiln; kiln writes tar layers (format: tar)`,
      "UNSUPPORTED",
    );
}

/** Resolve the config's packages for each arch (indexes are fetched and verified). */
export async function resolveImage(
  cfg: ImageConfig,
  ctx: ImageContext,
  lock?: LockFile,
): Promise<{ resolved: ResolvedImage[]; keys: Array<{ name: string; pem: Buffer }> }> {
  checkBuildable(cfg);
  const fetcher = ctx.fetcher ?? new DefaultFetcher();
  const { ring, keys } = await loadKeys(cfg, ctx, fetcher);
  const repos = repoRefs(cfg, ctx);
  if (lock) checkLockMatches(cfg, lock);
  const resolved: ResolvedImage[] = [];
  for (const arch of cfg.archs) {
    const repoCtx = {
      keyring: ring,
      fetcher,
      ...(ctx.allowUntrusted ? { allowUntrusted: true } : {}),
      ...(ctx.cacheDir ? { cacheDir: ctx.cacheDir } : {}),
    };
    // The base is local and checked first, before any repository is read.
    const base = cfg.baseImage ? await loadBase(cfg, arch, ctx) : undefined;
    const { packages } = await loadRepositories(repos, arch, repoCtx);
    if (lock) {
      const entries = lock.contents[arch];
      if (!entries) throw new ImageBuildError(`lock file has no packages for ${arch}`, "LOCK_MISMATCH");
      const chosen: RepoPackage[] = entries.map((e) => {
        const p = packages.find(
          (x) => x.record.name === e.name && x.record.version === e.version && x.record.checksum === e.checksum,
        );
        if (!p)
          throw new ImageBuildError(
            `locked ${e.name}-${e.version} (C:${e.checksum}) is not in the repositories any more, or its bytes changed; run kiln image lock again`,
            "LOCK_MISMATCH",
          );
        return p;
      });
      resolved.push({
        arch,
        resolution: { packages: chosen, world: cfg.packages },
        ...(base ? { base } : {}),
      });
    } else if (base) {
      resolved.push({ arch, resolution: resolveOnBase(cfg, arch, base, packages), base });
    } else {
      resolved.push({ arch, resolution: resolve(cfg.packages, packages, { arch }) });
    }
  }
  return { resolved, keys };
}

export function checkLockMatches(cfg: ImageConfig, lock: LockFile): void {
  if (lock.version !== "kiln-lock/v1")
    throw new ImageBuildError(`unsupported lock file version ${JSON.stringify(lock.version)}`, "LOCK_MISMATCH");
  const want = [...cfg.packages].sort();
  const have = [...lock.config.packages].sort();
  const added = want.filter((p) => !have.includes(p));
  const removed = have.filter((p) => !want.includes(p));
  if (added.length || removed.length) {
    throw new ImageBuildError(
      `${cfg.file} no longer matches the lock file (${[...added.map((a) => `+${a}`), ...removed.map((r) => `-${r}`)].join(" ")}); run kiln image lock again`,
      "LOCK_MISMATCH",
    );
  }
  const archs = Object.keys(lock.contents).sort().join(",");
  if (archs !== [...cfg.archs].sort().join(","))
    throw new ImageBuildError(`lock file covers ${archs}, the config asks for ${cfg.archs.join(",")}`, "LOCK_MISMATCH");
}

export function makeLock(cfg: ImageConfig, resolved: ResolvedImage[]): LockFile {
  const contents: Record<string, LockEntry[]> = {};
  for (const r of resolved) {
    contents[r.arch] = r.resolution.packages.map((p) => {
      const e: LockEntry = {
        name: p.record.name,
        version: p.record.version,
        url: p.url,
        repository: p.repo.url,
        checksum: p.record.checksum ?? "",
      };
      if (p.record.fileSize !== undefined) e.size = p.record.fileSize;
      return e;
    });
  }
  return {
    version: "kiln-lock/v1",
    config: { packages: [...cfg.packages], repositories: [...cfg.repositories, ...cfg.buildRepositories] },
    contents,
  };
}

export interface BuildImageOptions {
  out: string;
  format: OciOutputFormat;
  tag?: string;
  lock?: LockFile;
  /** Where to write the SPDX SBOM(s); default beside the output. */
  sbomDir?: string;
}

export interface BuiltImage {
  result: OciWriteResult;
  resolved: ResolvedImage[];
  sboms: string[];
  created: string;
  contentBytes: number;
}

/** Prefix of image builds' working directories (spools) in the system temporary directory. */
export const TEMP_PREFIX = "kiln-image-";

/** The OCI image config of one architecture's root. */
function archImage(
  cfg: ImageConfig,
  arch: string,
  root: ImageRoot,
  pkgs: RepoPackage[],
  epoch: number,
  created: string,
): ArchImage {
  const platform = OCI_PLATFORM[arch] ?? { architecture: arch };
  const layers = planLayers(root, pkgs, cfg.layering?.budget ?? 1, epoch);
  const img: ArchImage = {
    arch: platform.architecture,
    created,
    layers: layers.map((l) => l.source),
    history: layers.map((l) => ({ createdBy: "kiln", comment: l.comment })),
    env: Object.entries(cfg.environment)
      .map(([k, v]) => `${k}=${v}`)
      .sort(),
  };
  if (platform.variant) img.variant = platform.variant;
  if (cfg.entrypoint) img.entrypoint = cfg.entrypoint;
  if (cfg.cmd) img.cmd = cfg.cmd;
  if (cfg.workDir) img.workingDir = cfg.workDir;
  if (cfg.runAs) img.user = cfg.runAs;
  if (cfg.stopSignal) img.stopSignal = cfg.stopSignal;
  if (cfg.volumes.length) img.volumes = cfg.volumes;
  // As apko: the creation time is an annotation of every manifest too.
  img.annotations = { ...cfg.annotations, "org.opencontainers.image.created": created };
  return img;
}

/** One SPDX SBOM per architecture, in opts.sbomDir or beside the output; returns their paths. */
async function writeSboms(
  cfg: ImageConfig,
  ctx: ImageContext,
  opts: BuildImageOptions,
  roots: Array<{ arch: string; pkgs: RepoPackage[]; files: string[] }>,
  created: string,
  imageDigest: string,
): Promise<string[]> {
  const sboms: string[] = [];
  const sbomDir = opts.sbomDir;
  for (const { arch, pkgs, files } of roots) {
    const doc = imageSbom(pkgs, {
      sha256: await fileSha256s(files),
      name: basename(cfg.file).replace(/\.ya?ml$/, ""),
      arch,
      created,
      namespace: ctx.distro ?? "kiln",
      imageDigest,
    });
    const file = sbomDir
      ? joinUnder(sbomDir, `sbom-${arch}.spdx.json`)
      : `${opts.out.replace(/\/+$/, "")}.sbom-${assertPathComponent(arch, "architecture")}.spdx.json`;
    await writeFile(file, JSON.stringify(doc, null, 2) + "\n");
    sboms.push(file);
  }
  return sboms;
}

export async function buildImage(cfg: ImageConfig, ctx: ImageContext, opts: BuildImageOptions): Promise<BuiltImage> {
  const log = ctx.onProgress ?? (() => undefined);
  const fetcher = ctx.fetcher ?? new DefaultFetcher();
  const { resolved, keys } = await resolveImage(cfg, { ...ctx, fetcher }, opts.lock);
  for (const { arch } of resolved) assertPathComponent(arch, "architecture"); // names the spool and the SBOM files
  await cleanStaleTempDirs(TEMP_PREFIX).catch(() => undefined);
  const work = await makeTempDir(TEMP_PREFIX);
  try {
    const images: ArchImage[] = [];
    const roots: Array<{ arch: string; root: ImageRoot; pkgs: RepoPackage[]; files: string[]; base?: BaseImage }> = [];
    const users = new Map<string, string | undefined>();
    let contentBytes = 0;
    // created (and the truststore entries' time) = SOURCE_DATE_EPOCH, else the newest package build date.
    const newest = resolved
      .flatMap((r) => r.resolution.packages)
      .reduce((n, p) => Math.max(n, p.record.buildDate ?? 0), 0);
    const epoch = ctx.sourceDateEpoch ?? newest;
    for (const { arch, resolution, base } of resolved) {
      log(
        `${arch}: ${resolution.packages.length} packages resolved${base ? ` beside the base's ${base.installed.length}` : ""}`,
      );
      const root = new ImageRoot(joinUnder(work, { value: `spool-${arch}`, what: "spool directory" }), {
        ...(ctx.maxRootBytes !== undefined ? { maxBytes: ctx.maxRootBytes } : {}),
        ...(ctx.raiseHint ? { raiseHint: ctx.raiseHint } : {}),
      });
      root.checkDeclared(resolution.packages); // before downloading anything
      if (base) seedBaseLinks(root, base);
      const files = await fetchPackages(resolution.packages, {
        keyring: new Keyring(),
        fetcher,
        ...(ctx.cacheDir ? { cacheDir: ctx.cacheDir } : {}),
        concurrency: 4,
        // Installing reads and checks every entry next.
        packageCheck: "hashes",
      });
      for (const [i, p] of resolution.packages.entries()) {
        log(`${arch}: install ${p.record.name}-${p.record.version}`);
        await root.installPackage(files[i]!, p);
      }
      await root.createBusyboxLinks();
      // As apko: on a base image the accounts are the base's (no /etc/passwd is written over them).
      if (!base) await applyAccounts(root, cfg);
      await applyPaths(root, cfg);
      await applyOsRelease(root, cfg);
      if (cfg.certificates) await applyCertificates(root, cfg.certificates, `${cfg.file}: certificates`, epoch);
      await writeBundleChecksums(root);
      // As apko: the image's repositories file lists repositories and runtime_repositories (sorted, once each).
      const runtimeRepos = [...new Set([...cfg.repositories, ...cfg.runtimeRepositories])]
        .sort()
        .map(parseRepositoryRef);
      // As apko: the installed database lists the base's packages too, and the world names them at their versions.
      if (base) root.installed.push(...base.installed);
      const world = base
        ? [...cfg.packages, ...base.installed.map((p) => `${p.record.name}=${p.record.version}`)]
        : cfg.packages;
      await root.writeApkState({ world, repositories: runtimeRepos, arch, keys });
      if (cfg.runtimeKeyring)
        await applyRuntimeKeyring(root, cfg.runtimeKeyring, `${cfg.file}: contents.runtime_keyring`);
      await applyServices(root, cfg);
      users.set(arch, await runAsUid(root, cfg));
      contentBytes += root.contentSize;
      roots.push({ arch, root, pkgs: resolution.packages, files, ...(base ? { base } : {}) });
    }
    const created = new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
    for (const { arch, root, pkgs, base } of roots) {
      const img = archImage(cfg, arch, root, pkgs, epoch, created);
      if (base) baseArchImage(img, base);
      const user = users.get(arch);
      if (user !== undefined) img.user = user;
      images.push(img);
    }
    log(`writing ${opts.format} ${opts.out}`);
    const spec = {
      images,
      tag: opts.tag ?? "latest",
      annotations: { ...cfg.annotations, "org.opencontainers.image.created": created },
    };
    const result = await writeOciImage(spec, opts.out, opts.format);
    const sboms = await writeSboms(cfg, ctx, opts, roots, created, result.digest);
    return { result, resolved, sboms, created, contentBytes };
  } finally {
    await removeTempDir(work);
  }
}

/**
 * The image's user: run-as as apko resolves it, a user name of the image's
 * /etc/passwd becoming its uid; a numeric uid[:gid] is kept. A name the image
 * does not have is refused (apko would leave it for the runtime to fail on).
 */
async function runAsUid(root: ImageRoot, cfg: ImageConfig): Promise<string | undefined> {
  const runAs = cfg.runAs;
  if (runAs === undefined || /^\d+(:\d+)?$/.test(runAs)) return runAs;
  const [name, group] = runAs.split(":", 2) as [string, string | undefined];
  const passwd = ((await root.readText("etc/passwd")) ?? "").split("\n").map((l) => l.split(":"));
  const row = passwd.find((r) => r[0] === name && r.length >= 3);
  if (!row)
    throw new ImageBuildError(
      `${cfg.file}: accounts.run-as: ${JSON.stringify(name)} is not a user of the image's /etc/passwd (users: ${
        passwd
          .filter((r) => r.length >= 3)
          .map((r) => r[0])
          .join(", ") || "none"
      })`,
      "ACCOUNTS",
    );
  return group === undefined ? row[2] : `${row[2]}:${group}`;
}

interface PlannedLayer {
  comment: string;
  source: () => AsyncIterable<Uint8Array>;
}

/**
 * Layers by origin (apko's `layering: {strategy: origin, budget}`): the
 * largest origins get a layer each, up to budget-1, so bases shared between
 * images share layers; everything else, and what kiln generated, goes last.
 */
export function planLayers(root: ImageRoot, pkgs: RepoPackage[], budget: number, mtime: number): PlannedLayer[] {
  if (budget <= 1) return [{ comment: "all packages", source: () => root.tar({ mtime }) }];
  const all = root.sorted();
  const originOf = new Map(pkgs.map((p) => [p.record.name, p.record.origin ?? p.record.name]));
  const size = new Map<string, number>();
  for (const n of all) {
    const o = n.owner ? originOf.get(n.owner) : undefined;
    if (o && n.type !== "dir") size.set(o, (size.get(o) ?? 0) + (n.blob?.size ?? 0) + 512);
  }
  const ranked = [...size.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, budget - 1)
    .map(([o]) => o)
    .sort();
  const own = new Set(ranked);
  const layers: PlannedLayer[] = ranked.map((o) => {
    const nodes = all.filter((n) => n.type !== "dir" && n.owner && originOf.get(n.owner) === o);
    return { comment: `origin ${o}`, source: () => root.tar({ mtime, nodes }) };
  });
  const rest = all.filter((n) => n.type === "dir" || !n.owner || !own.has(originOf.get(n.owner) ?? ""));
  layers.push({ comment: "other packages and image configuration", source: () => root.tar({ mtime, nodes: rest }) });
  return layers;
}

export async function readLock(file: string): Promise<LockFile> {
  return JSON.parse(await readFile(file, "utf8")) as LockFile;
}
