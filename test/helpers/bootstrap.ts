// The stage-0 toolchain from recipes/, built once into a repository that the
// build tests use as their upstream. Cached under node_modules/.cache keyed by
// the recipes' content, so local re-runs reuse it; CI starts fresh.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKey } from "@kiln/apk";
import { kilnAsync } from "./cli.js";
import { takeLock } from "./lock.js";
import { REPO_ROOT } from "./paths.js";

export const TOOLCHAIN_RECIPES = [
  "busybox-static",
  "base-layout",
  "busybox-links",
  "glibc-bootstrap",
  "python3-bootstrap",
  "libxcrypt",
  "linux-headers",
  "libgcc",
  "libstdc++",
  "gmp-bootstrap",
  "mpfr-bootstrap",
  "mpc-bootstrap",
  "isl-bootstrap",
  "zlib-bootstrap",
  "zstd-bootstrap",
  "jansson-bootstrap",
  "make-bootstrap",
  "binutils-bootstrap",
  "gcc",
  "build-base",
];

export interface Bootstrap {
  repo: string;
  privateKey: string;
  publicKey: string;
  cacheDir: string;
}

/** The options that build against the stage-0 repository: its signing key, repository, keyring and a cache. */
export function upstreamArgs(boot: Bootstrap, cacheDir: string = boot.cacheDir): string[] {
  return [
    "--signing-key",
    boot.privateKey,
    "--repository-append",
    boot.repo,
    "--keyring-append",
    boot.publicKey,
    "--cache-dir",
    cacheDir,
  ];
}

export async function bootstrapToolchain(): Promise<Bootstrap> {
  const files = TOOLCHAIN_RECIPES.map((r) => join(REPO_ROOT, "recipes", `${r}.yaml`));
  const h = createHash("sha256");
  for (const f of files) h.update(readFileSync(f));
  const dir = join(REPO_ROOT, "node_modules/.cache/kiln-tests", `bootstrap-${h.digest("hex").slice(0, 16)}`);
  const privateKey = join(dir, "keys/bootstrap.rsa");
  const publicKey = `${privateKey}.pub`;
  const repo = join(dir, "repo");
  const cacheDir = join(REPO_ROOT, "node_modules/.cache/kiln-tests/cache");
  const done = join(dir, "complete");
  // Test files run in parallel workers and each asks for the toolchain: one
  // builds it while the others wait. Two builds into one repository race on
  // its index (CI once saw an index without mpc), so the build is locked.
  while (!existsSync(done)) {
    const release = await takeLock(`${dir}.lock`);
    if (!release) continue;
    try {
      if (existsSync(done)) break;
      mkdirSync(join(dir, "keys"), { recursive: true });
      if (!existsSync(privateKey)) {
        const k = await generateKey(2048);
        writeFileSync(privateKey, k.privatePem, { mode: 0o600 });
        writeFileSync(publicKey, k.publicPem);
      }
      // A build interrupted earlier may have left part of a repository.
      rmSync(repo, { recursive: true, force: true });
      const r = await kilnAsync([
        "build",
        ...files,
        "--out",
        repo,
        "--signing-key",
        privateKey,
        "--cache-dir",
        cacheDir,
        "--no-test",
      ]);
      if (r.status !== 0) throw new Error(`bootstrap build failed:\n${r.stderr.slice(-4000)}`);
      writeFileSync(done, new Date().toISOString());
    } finally {
      release();
    }
  }
  return { repo, privateKey, publicKey, cacheDir };
}
