// Build guests: a recipe's environment is an image config; its packages are
// resolved from the recipe's repositories plus the local output repository,
// installed with @kiln/image, given the build user, and materialized into a
// directory that is reused for every build with the same resolved package set.

import { createHash } from "node:crypto";
import { mkdir, rm, stat, mkdtemp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Keyring, parsePublicKey } from "@kiln/apk";
import { installDir } from "@kiln/core";
import { applyAccounts, applyPaths, ImageRoot, materializeRoot, type ImageConfig } from "@kiln/image";
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
}

export interface Guest {
  dir: string;
  packages: RepoPackage[];
  /** Identity of the resolved set: what the guest is made of. */
  key: string;
  reused: boolean;
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
  return resolve(spec.packages, packages, { arch: spec.arch }).packages;
}

export function guestKey(pkgs: RepoPackage[], buildUid: number, image?: ImageConfig): string {
  const h = createHash("sha256");
  h.update(`uid=${buildUid}\n`);
  if (image) h.update(JSON.stringify({ paths: image.paths, users: image.users, groups: image.groups }) + "\n");
  for (const p of pkgs) h.update(`${p.record.name} ${p.record.version} ${p.record.checksum}\n`);
  return h.digest("hex");
}

/** Assemble (or reuse) the guest for a resolved package set. */
export async function assembleGuest(spec: GuestSpec, pkgs: RepoPackage[]): Promise<Guest> {
  const key = guestKey(pkgs, spec.buildUid, spec.image);
  const dir = join(spec.cacheDir, "guests", key);
  if (await stat(join(dir, ".kiln-guest-complete")).catch(() => undefined))
    return { dir, packages: pkgs, key, reused: true };
  await mkdir(join(spec.cacheDir, "guests"), { recursive: true });
  const files = await fetchPackages(pkgs, {
    keyring: new Keyring(),
    cacheDir: spec.cacheDir,
    ...(spec.fetcher ? { fetcher: spec.fetcher } : {}),
  });
  const work = await mkdtemp(join(spec.cacheDir, "guests", "tmp-"));
  try {
    const root = new ImageRoot(join(work, "spool"));
    for (const [i, p] of pkgs.entries()) await root.installPackage(files[i]!, p);
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
    await materializeRoot(root, join(work, "root"));
    await rm(join(work, "spool"), { recursive: true, force: true });
    await writeFile(join(work, "root", ".kiln-guest-complete"), key + "\n");
    // Another build may have assembled the same guest meanwhile (and may be
    // running in it): a complete guest is kept, never replaced.
    if (await stat(join(dir, ".kiln-guest-complete")).catch(() => undefined))
      return { dir, packages: pkgs, key, reused: true };
    // An incomplete one left by a crash is replaced (moved aside, then removed).
    await installDir(join(work, "root"), dir);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { dir, packages: pkgs, key, reused: false };
}
