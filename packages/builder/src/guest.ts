// Build guests: a recipe's environment is an image config; its packages are
// resolved from the recipe's repositories plus the local output repository,
// installed with @kiln/image, given the build user, and materialized into a
// directory that is reused for every build with the same resolved package set.
// Its files are hard links into the shared content store (guest-store.ts);
// a build holds a lease on its guest until it ends, so pruning (guest-prune.ts)
// never takes a guest in use, and each use is recorded for LRU eviction.

import { createHash } from "node:crypto";
import { mkdir, rm, stat, mkdtemp, writeFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { Keyring, parsePublicKey } from "@kiln/apk";
import { installDir } from "@kiln/core";
import { GUEST_MARKER, leaseGuest, touch } from "./guest-cache.js";
import { GuestStore } from "./guest-store.js";
import { saveManifest, usableManifest } from "./guest-manifests.js";
import {
  applyAccounts,
  applyPaths,
  ImageRoot,
  materializeRoot,
  type ImageConfig,
  type PackageManifest,
} from "@kiln/image";
import {
  fetchPackages,
  loadRepositories,
  parseRepositoryRef,
  resolve,
  type Fetcher,
  type RepoPackage,
} from "@kiln/repo";

export interface GuestSpec {
  arch: string;
  packages: string[];
  repositories: string[];
  keys: Array<{ name: string; pem: Buffer }>;
  /** uid/gid of the build user. */
  buildUid: number;
  cacheDir: string;
  fetcher?: Fetcher;
  allowUntrusted?: boolean;
  /** The environment as an image config: its `paths` and `accounts` are applied too. */
  image?: ImageConfig;
  /** Package names the repositories are read without. */
  exclude?: string[];
}

export interface Guest {
  dir: string;
  packages: RepoPackage[];
  /** Identity of the resolved set: what the guest is made of. */
  key: string;
  reused: boolean;
  /** Ends this build's use of the guest (its lease): from then on it may be evicted. */
  release(): Promise<void>;
}

export async function resolveGuest(spec: GuestSpec): Promise<RepoPackage[]> {
  const ring = new Keyring();
  for (const k of spec.keys) ring.add(k.name, parsePublicKey(k.pem, k.name));
  const { packages } = await loadRepositories(spec.repositories.map(parseRepositoryRef), spec.arch, {
    keyring: ring,
    cacheDir: spec.cacheDir,
    ...(spec.fetcher ? { fetcher: spec.fetcher } : {}),
    ...(spec.allowUntrusted ? { allowUntrusted: true } : {}),
  });
  const exclude = new Set(spec.exclude ?? []);
  const pool = exclude.size ? packages.filter((p) => !exclude.has(p.record.name)) : packages;
  return resolve(spec.packages, pool, { arch: spec.arch }).packages;
}

export function guestKey(pkgs: RepoPackage[], buildUid: number, image?: ImageConfig): string {
  const h = createHash("sha256");
  h.update(`uid=${buildUid}\n`);
  if (image) h.update(JSON.stringify({ paths: image.paths, users: image.users, groups: image.groups }) + "\n");
  for (const p of pkgs) h.update(`${p.record.name} ${p.record.version} ${p.record.checksum}\n`);
  return h.digest("hex");
}

/** Assemble (or reuse) the guest for a resolved package set; held (leased) until `release()`. */
export async function assembleGuest(spec: GuestSpec, pkgs: RepoPackage[]): Promise<Guest> {
  const key = guestKey(pkgs, spec.buildUid, spec.image);
  const dir = join(spec.cacheDir, "guests", key);
  // The lease comes before the look: a prune that renamed the guest aside sees it and puts it back.
  const lease = await leaseGuest(spec.cacheDir, key);
  try {
    const reused = await assembleLeased(spec, pkgs, key, dir);
    await touch(join(dir, GUEST_MARKER));
    return { dir, packages: pkgs, key, reused, release: () => lease.release() };
  } catch (e) {
    await lease.release();
    throw e;
  }
}

const complete = (dir: string) =>
  stat(join(dir, GUEST_MARKER)).then(
    () => true,
    () => false,
  );

async function assembleLeased(spec: GuestSpec, pkgs: RepoPackage[], key: string, dir: string): Promise<boolean> {
  if (await complete(dir)) return true;
  await mkdir(join(spec.cacheDir, "guests"), { recursive: true });
  try {
    return await assembleOnce(spec, pkgs, key, dir, true);
  } catch (e) {
    // A store entry a manifest named can go (a prune) while the guest is made: made again from the packages.
    if (!(e instanceof ManifestRace)) throw e;
    return await assembleOnce(spec, pkgs, key, dir, false);
  }
}

/** A guest made from manifests failed while placing files (its store entries changed): retried without them. */
class ManifestRace extends Error {}

async function assembleOnce(
  spec: GuestSpec,
  pkgs: RepoPackage[],
  key: string,
  dir: string,
  useManifests: boolean,
): Promise<boolean> {
  const store = new GuestStore(spec.cacheDir);
  // Packages installed before are installed from their manifests (guest-manifests.ts): nothing to fetch or read.
  const manifests = await Promise.all(
    pkgs.map((p) => (useManifests ? usableManifest(spec.cacheDir, p) : Promise.resolve(undefined))),
  );
  const toRead = pkgs.filter((_, i) => !manifests[i]);
  const fetched = await fetchPackages(toRead, {
    keyring: new Keyring(),
    cacheDir: spec.cacheDir,
    // Each is installed below, which reads and checks every entry.
    packageCheck: "hashes",
    ...(spec.fetcher ? { fetcher: spec.fetcher } : {}),
  });
  for (const f of fetched) await touch(f); // last use, for the cache's LRU eviction
  const files = new Map(toRead.map((p, i) => [p, fetched[i]!]));
  const work = await mkdtemp(join(spec.cacheDir, "guests", "tmp-"));
  try {
    const root = new ImageRoot(join(work, "spool"));
    const made: Array<[RepoPackage, PackageManifest]> = [];
    for (const [i, p] of pkgs.entries()) {
      const m = manifests[i];
      if (m) {
        await root.installFromManifest(m, p, (e) => store.entryPath(e.sha256!, e.mode));
        for (const e of m.entries) if (e.sha256 && e.sha1) store.seed(e.sha1, e.sha256);
      } else made.push([p, (await root.installPackage(files.get(p)!, p, { manifest: true }))!]);
    }
    await populateGuest(root, spec);
    try {
      await materializeRoot(root, join(work, "root"), {
        placeFile: (blob, dest, mode) => store.place(root.blobs, blob, dest, mode),
        placeFileSync: (blob, dest, mode) => store.placeSync(blob, dest, mode),
      });
    } catch (e) {
      if (manifests.some(Boolean) && (e as NodeJS.ErrnoException).code === "ENOENT") throw new ManifestRace();
      throw e;
    }
    for (const [p, m] of made) await saveManifest(spec.cacheDir, p, m, store, root.blobs).catch(() => false);
    await store.checks.flush();
    await rm(join(work, "spool"), { recursive: true, force: true });
    await writeFile(join(work, "root", GUEST_MARKER), key + "\n");
    return await install(join(work, "root"), dir);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Put the assembled root at `dir`; true when a complete guest was there
 * already. Another build may have assembled the same guest meanwhile (and
 * may be running in it): a complete guest is kept, never replaced; an
 * incomplete one left by a crash is replaced (moved aside, then removed).
 */
async function install(root: string, dir: string): Promise<boolean> {
  try {
    await rename(root, dir);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
  }
  if (await complete(dir)) return true;
  await installDir(root, dir);
  return false;
}

/** The build user, the environment's accounts and paths, the mount points, apk's state. */
async function populateGuest(root: ImageRoot, spec: GuestSpec): Promise<void> {
  await root.createBusyboxLinks();
  // The build user, as melange adds it: uid/gid 1000, HOME=/home/build.
  const passwd = (await root.readText("etc/passwd")) ?? "root:x:0:0:root:/root:/bin/sh\n";
  const group = (await root.readText("etc/group")) ?? "root:x:0:\n";
  if (!/^build:/m.test(passwd))
    await root.writeFile(
      "etc/passwd",
      passwd +
        (passwd.endsWith("\n") ? "" : "\n") +
        `build:x:${spec.buildUid}:${spec.buildUid}:build:/home/build:/bin/sh\n`,
    );
  if (!/^build:/m.test(group))
    await root.writeFile("etc/group", group + (group.endsWith("\n") ? "" : "\n") + `build:x:${spec.buildUid}:\n`);
  root.mkdirp("home/build", { uid: spec.buildUid, gid: spec.buildUid });
  if (spec.image) {
    await applyAccounts(root, spec.image);
    await applyPaths(root, spec.image);
  }
  root.mkdirp("tmp", { mode: 0o1777 });
  root.mkdirp("proc");
  root.mkdirp("dev");
  root.mkdirp("run");
  await root.writeApkState({ world: spec.packages, repositories: [], arch: spec.arch, keys: spec.keys });
}
